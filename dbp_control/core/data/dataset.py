"""Episodes (rosbag2) -> a training dataset (zarr v3), and reading it back as training windows.

Why zarr: it is the format Diffusion Policy's replay buffer and LeRobot v1 used for this kind of data,
an open spec with readers in several languages; arrays are chunked along time and Blosc/zstd
compressed, appendable one episode at a time, and its attributes carry the layout as JSON.

Each episode is replayed the way the live observation node sees the robot: messages in arrival (log
time) order; the cameras and the joint states matched by `ApproximateTimeSync`; a step every
1/rate_hz seconds takes the freshest joint state, the latest synchronised images and the arm command
in effect (from the position topics, or from the trajectory topics of a command node with
`command_type: trajectory`). The step period is the action chunk's time step.

Layout of DATASET.zarr:
  data/stamp_ns [N] int64         time of each step (bag log time)
  data/state    [N, 14] float32   joint positions (rad; grippers 0 open .. 1 closed), layout order
  data/action   [N, 14] float32   commanded positions of both arms, same order
  data/objects  [N, 7k] float32   (optional) movable object poses, simulation only
  data/images/<camera> [N, H, W, 3] uint8
  data/image_age_ms [N] float32   step time minus the newest stamp of the synchronised image set
  meta/episode_ends [E] int64     exclusive end index of each episode
  attributes: format, layout (topics, joints, cameras), build settings, episodes, split, stats
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from zarr.codecs import BloscCodec

from dbp_control.core.channels import CHANNELS, COMMAND_TYPES, command_channel
from dbp_control.core.data.bags import BagError, poses_of, read_bag, read_episode_info, stamp_ns_of, trajectory_positions
from dbp_control.core.layout import CAMERAS, ROBOT_JOINTS, SIDES, joint_names
from dbp_control.core.observation.images import ImageError, decode_image, resize_rgb
from dbp_control.core.observation.sync import DEFAULT_QUEUE_SIZE, DEFAULT_SLOP_S, ApproximateTimeSync

FORMAT = "dbp_control.dataset"
FORMAT_VERSION = 1
LOW_DIM_CHUNK = 4096
IMAGE_CHUNK = 32  # frames per chunk: training reads whole episodes, so chunks can be long


class DatasetError(ValueError):
    """A dataset that cannot be built or used as asked."""


class EpisodeSkipped(Exception):
    """One episode cannot go into the dataset; the message says why."""


@dataclass(frozen=True)
class BuildConfig:
    cameras: tuple[str, ...] = CAMERAS  # () builds a state-only dataset
    image_size: tuple[int, int] = (96, 96)  # (height, width) of the stored images
    rate_hz: float = 10.0
    objects: bool = False  # include the simulator's object poses (topic /sim/object_poses)
    queue_size: int = DEFAULT_QUEUE_SIZE
    slop_s: float = DEFAULT_SLOP_S
    val_fraction: float = 0.1
    seed: int = 0
    include_failures: bool = False
    distro: str = "humble"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.cameras) - set(CAMERAS))
        if unknown:
            raise DatasetError(f"unknown camera(s) {unknown}; cameras: {list(CAMERAS)}")
        if len(set(self.cameras)) != len(self.cameras):
            raise DatasetError(f"camera listed twice in {list(self.cameras)}")
        if not self.rate_hz > 0:
            raise DatasetError(f"rate_hz must be positive, got {self.rate_hz}")
        if not 0 <= self.val_fraction < 1:
            raise DatasetError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if min(self.image_size) <= 0:
            raise DatasetError(f"image size must be positive, got {self.image_size}")


@dataclass
class EpisodeArrays:
    stamp_ns: np.ndarray
    state: np.ndarray
    action: np.ndarray
    image_age_ms: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    objects: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.stamp_ns)


def _joint_order(names: list[str]) -> np.ndarray:
    """Index into a JointState's arrays for each layout joint (drivers may publish in any order)."""
    index = {name: i for i, name in enumerate(names)}
    missing = [n for n in ROBOT_JOINTS if n not in index]
    if missing:
        raise EpisodeSkipped(f"joint_states lack joint(s) {missing}")
    return np.array([index[n] for n in ROBOT_JOINTS])


def _command_values(topic: str, msg: Any, command_type: str, side: str) -> np.ndarray:
    """One arm's command (six joints and the gripper, in layout order) from either command message: a
    Float64MultiArray, or a JointTrajectory whose first point is the position it commands next."""
    expected = len(joint_names(side))
    if command_type == "position":
        values = np.asarray(msg.data, dtype=np.float64)
        if values.shape != (expected,):
            raise EpisodeSkipped(f"a command on {topic} with {values.size} values, expected {expected}")
        return values
    try:
        positions, _ = trajectory_positions(msg, joint_names(side))
    except ValueError as exc:
        raise EpisodeSkipped(f"a trajectory on {topic}: {exc}") from None
    if not len(positions):
        raise EpisodeSkipped(f"a trajectory on {topic} without points")
    return positions[0]


def compile_episode(bag: Path, cfg: BuildConfig) -> tuple[EpisodeArrays, dict[str, Any]]:
    """Replay one bag into steps. Raises EpisodeSkipped (with the reason) for an unusable episode."""
    try:
        info = read_episode_info(bag)
    except BagError as exc:
        raise EpisodeSkipped(str(exc)) from None
    if info is None:
        raise EpisodeSkipped("no episode info (the recording was interrupted before it finished)")
    if not info.get("success", False) and not cfg.include_failures:
        raise EpisodeSkipped("a failed episode (use include_failures to keep it)")
    joint_topic = CHANNELS["joint_states"].topic
    # either command_type's topics; an arm commanded on both would leave the action ambiguous
    command_topics = {command_channel(side, kind).topic: (i, kind) for i, side in enumerate(SIDES) for kind in COMMAND_TYPES}
    command_kinds: list[str | None] = [None] * len(SIDES)
    image_topics = {CHANNELS[f"{cam}_image"].topic: i for i, cam in enumerate(cfg.cameras)}
    objects_topic = CHANNELS["object_poses"].topic
    topics = [joint_topic, *image_topics] + ([objects_topic] if cfg.objects else [])
    sync = ApproximateTimeSync(len(cfg.cameras) + 1, cfg.queue_size, cfg.slop_s) if cfg.cameras else None
    joint_input = len(cfg.cameras)

    joints: np.ndarray | None = None
    order: np.ndarray | None = None
    commands: list[np.ndarray | None] = [None] * len(SIDES)
    image_set: tuple[int, list[np.ndarray]] | None = None  # (newest stamp, resized frames)
    objects: np.ndarray | None = None
    steps: dict[str, list[Any]] = {k: [] for k in ("stamp_ns", "state", "action", "image_age_ms", "objects")}
    frames: dict[str, list[np.ndarray]] = {cam: [] for cam in cfg.cameras}
    period_ns = round(1e9 / cfg.rate_hz)
    next_tick: int | None = None
    last_log_time = 0

    def ready() -> bool:
        return (joints is not None and all(c is not None for c in commands)
                and (image_set is not None or not cfg.cameras) and (objects is not None or not cfg.objects))

    def emit(tick: int) -> None:
        steps["stamp_ns"].append(tick)
        steps["state"].append(joints)
        steps["action"].append(np.concatenate(commands))  # type: ignore[arg-type]
        steps["objects"].append(objects)
        if image_set is not None:
            steps["image_age_ms"].append((tick - image_set[0]) / 1e6)
            for cam, frame in zip(cfg.cameras, image_set[1]):
                frames[cam].append(frame)
        else:
            steps["image_age_ms"].append(np.nan)

    try:
        # a bag holds one command type's topics or both (the recorder's); "never got arm commands" if neither
        for message in read_bag(bag, topics=topics, optional_topics=command_topics, distro=cfg.distro):
            matched = None
            while next_tick is not None and message.log_time_ns > next_tick:
                emit(next_tick)
                next_tick += period_ns
            if message.topic == joint_topic:
                if order is None:
                    order = _joint_order(list(message.msg.name))
                position = np.asarray(message.msg.position, dtype=np.float64)
                if len(position) != len(message.msg.name):
                    raise EpisodeSkipped(f"a JointState with {len(message.msg.name)} names but {len(position)} positions")
                joints = position[order]
                if sync is not None:
                    matched = sync.push(joint_input, stamp_ns_of(message.msg), message.msg)
            elif message.topic in command_topics:
                arm, kind = command_topics[message.topic]
                if command_kinds[arm] not in (None, kind):
                    raise EpisodeSkipped(f"the {SIDES[arm]} arm is commanded on both "
                                         f"{command_channel(SIDES[arm], command_kinds[arm]).topic} and {message.topic}")
                command_kinds[arm] = kind
                commands[arm] = _command_values(message.topic, message.msg, kind, SIDES[arm])
                continue
            elif message.topic == objects_topic:
                objects = poses_of(message.msg).reshape(-1)
                continue
            else:
                matched = sync.push(image_topics[message.topic], stamp_ns_of(message.msg), message.msg)  # type: ignore[union-attr]
            if matched is not None:
                images = [resize_rgb(decode_image(m), cfg.image_size) for m in matched[:joint_input]]
                image_set = (max(stamp_ns_of(m) for m in matched[:joint_input]), images)
            if next_tick is None and ready():
                next_tick = message.log_time_ns
            last_log_time = message.log_time_ns
        if next_tick is not None and next_tick == last_log_time:
            emit(next_tick)  # a tick exactly at the final message
    except BagError as exc:
        raise EpisodeSkipped(str(exc)) from None
    except ImageError as exc:
        raise EpisodeSkipped(f"bad image: {exc}") from None
    if not steps["stamp_ns"]:
        missing = "joint states" if joints is None else "arm commands" if not all(c is not None for c in commands) \
            else "a synchronised camera set" if cfg.cameras and image_set is None else "object poses"
        raise EpisodeSkipped(f"no complete observation: never got {missing}")
    arrays = EpisodeArrays(
        stamp_ns=np.array(steps["stamp_ns"], dtype=np.int64),
        state=np.array(steps["state"], dtype=np.float32),
        action=np.array(steps["action"], dtype=np.float32),
        image_age_ms=np.array(steps["image_age_ms"], dtype=np.float32),
        images={cam: np.stack(f) for cam, f in frames.items()},
        objects=np.array(steps["objects"], dtype=np.float32) if cfg.objects else None,
    )
    return arrays, info


def find_bags(paths: Iterable[Path]) -> list[Path]:
    """Each path is a bag folder (with metadata.yaml) or a folder of bag folders."""
    bags: list[Path] = []
    for path in map(Path, paths):
        if (path / "metadata.yaml").exists():
            bags.append(path)
        elif path.is_dir():
            found = sorted(p.parent for p in path.glob("*/metadata.yaml"))
            if not found:
                raise DatasetError(f"{path} is neither a bag nor a folder of bags (no metadata.yaml found)")
            bags.extend(found)
        else:
            raise DatasetError(f"no bag at {path}")
    if not bags:
        raise DatasetError("no bags given")
    return bags


@dataclass
class BuildReport:
    out: Path
    episodes: int
    steps: int
    skipped: list[tuple[Path, str]]
    split: dict[str, list[int]]
    bytes: int
    seconds: float


def _stats(values: np.ndarray) -> dict[str, list[float]]:
    v = values.astype(np.float64)
    return {"min": v.min(0).tolist(), "max": v.max(0).tolist(), "mean": v.mean(0).tolist(), "std": v.std(0).tolist()}


def _split(n: int, val_fraction: float, seed: int) -> dict[str, list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = 0 if n < 2 or val_fraction == 0 else max(1, round(n * val_fraction))
    return {"train": sorted(order[n_val:].tolist()), "val": sorted(order[:n_val].tolist())}


def dataset_layout(cfg: BuildConfig) -> dict[str, Any]:
    """The layout a dataset built with `cfg` records: joints, and the channels its arrays came from."""
    return {
        "joints": list(ROBOT_JOINTS),
        "state": {"topic": CHANNELS["joint_states"].topic, "names": list(ROBOT_JOINTS)},
        "action": {side: {"topic": CHANNELS[f"{side}_arm_command"].topic,
                          "trajectory_topic": CHANNELS[f"{side}_arm_trajectory"].topic, "names": joint_names(side)}
                   for side in SIDES},
        "cameras": {cam: {"topic": CHANNELS[f"{cam}_image"].topic, "size": list(cfg.image_size)} for cam in cfg.cameras},
        "objects": {"topic": CHANNELS["object_poses"].topic} if cfg.objects else None,
    }


class DatasetWriter:
    """Writes a dataset one episode at a time into a hidden staging folder beside `out`; `finish` adds
    the split, statistics and layout and moves it to `out`. An existing `out` is never touched; on any
    error the staging folder is removed (a full disk is reported as such)."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        if self.out.exists():
            raise DatasetError(f"{self.out} already exists; refusing to overwrite a dataset")
        self.partial = self.out.with_name(f".{self.out.name}.partial")
        if self.partial.exists():
            shutil.rmtree(self.partial)  # left by an interrupted build
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.root: zarr.Group | None = None
        self.episodes: list[dict[str, Any]] = []
        self.ends: list[int] = []
        self._stats_parts: dict[str, list[np.ndarray]] = {"state": [], "action": [], "objects": []}
        self._pixels: dict[str, list[np.ndarray]] = {}

    def add(self, arrays: EpisodeArrays, description: dict[str, Any]) -> None:
        if self.root is None:
            self.root = _create(self.partial, arrays)
        _append(self.root, arrays)
        self.ends.append((self.ends[-1] if self.ends else 0) + len(arrays))
        self.episodes.append({"steps": len(arrays), **description})
        self._stats_parts["state"].append(arrays.state)
        self._stats_parts["action"].append(arrays.action)
        if arrays.objects is not None:
            self._stats_parts["objects"].append(arrays.objects)
        for cam, frames in arrays.images.items():  # a few frames per episode for the colour statistics
            self._pixels.setdefault(cam, []).append(frames[:: max(1, len(frames) // 8)].reshape(-1, 3))

    def finish(self, *, layout: dict[str, Any], build: dict[str, Any], val_fraction: float, seed: int,
               skipped: list[tuple[Path, str]] = ()) -> dict[str, list[int]]:
        if self.root is None:
            raise DatasetError("no episode was added")
        split = _split(len(self.episodes), val_fraction, seed)
        train = split["train"] or split["val"]
        stats = {k: _stats(np.concatenate([v[i] for i in train])) for k, v in self._stats_parts.items() if v}
        for cam, pixels in self._pixels.items():
            p = np.concatenate([pixels[i] for i in train]).astype(np.float64) / 255.0
            stats[f"images/{cam}"] = {"mean": p.mean(0).tolist(), "std": p.std(0).tolist()}
        self.root.create_array("meta/episode_ends", data=np.array(self.ends, dtype=np.int64))
        self.root.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "layout": layout, "build": _jsonable(build),
            "episodes": self.episodes, "split": split, "stats": stats,
            "skipped": [{"source": str(b), "reason": r} for b, r in skipped],
        })
        self.partial.rename(self.out)
        return split

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.out.rglob("*") if f.is_file())

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            return
        shutil.rmtree(self.partial, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DatasetError(f"disk full while writing {self.out}; nothing was written there and no input "
                               "was changed") from exc


def build_dataset(bag_paths: Iterable[Path], out: Path, cfg: BuildConfig,
                  progress: Callable[[Iterable[Path]], Iterable[Path]] = lambda bags: bags) -> BuildReport:
    """Compile bags into `out` (a new folder; never overwritten). Bags are only read. Unusable episodes
    are skipped and listed in the report; the dataset appears under `out` only when complete."""
    import time

    start = time.perf_counter()
    bags = find_bags(bag_paths)
    skipped: list[tuple[Path, str]] = []
    with DatasetWriter(out) as writer:
        for bag in progress(bags):
            try:
                arrays, info = compile_episode(bag, cfg)
            except EpisodeSkipped as exc:
                skipped.append((bag, str(exc)))
                continue
            writer.add(arrays, {"source": str(bag.resolve()),
                                **{k: info.get(k) for k in ("task", "seed", "success", "strategy", "execution_noise")}})
        if not writer.episodes:
            reasons = "; ".join(f"{b.name}: {r}" for b, r in skipped)
            raise DatasetError(f"no usable episode among {len(bags)} bag(s): {reasons}")
        split = writer.finish(layout=dataset_layout(cfg), build=asdict(cfg), val_fraction=cfg.val_fraction, seed=cfg.seed,
                              skipped=skipped)
    return BuildReport(writer.out, len(writer.episodes), writer.ends[-1], skipped, split, writer.bytes,
                       time.perf_counter() - start)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def _create(path: Path, first: EpisodeArrays) -> zarr.Group:
    root = zarr.open_group(path, mode="w-", zarr_format=3)
    compressor = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
    for name, values in _columns(first).items():
        chunk = IMAGE_CHUNK if values.ndim == 4 else LOW_DIM_CHUNK
        root.create_array(f"data/{name}", shape=(0, *values.shape[1:]), chunks=(chunk, *values.shape[1:]),
                          dtype=values.dtype, compressors=compressor)
    return root


def _columns(arrays: EpisodeArrays) -> dict[str, np.ndarray]:
    columns = {"stamp_ns": arrays.stamp_ns, "state": arrays.state, "action": arrays.action,
               "image_age_ms": arrays.image_age_ms}
    if arrays.objects is not None:
        columns["objects"] = arrays.objects
    columns.update({f"images/{cam}": frames for cam, frames in arrays.images.items()})
    return columns


def _append(root: zarr.Group, arrays: EpisodeArrays) -> None:
    for name, values in _columns(arrays).items():
        root[f"data/{name}"].append(values, axis=0)


# -- reading ---------------------------------------------------------------------------------------


class Dataset:
    """A built dataset, validated on open; arrays are loaded into memory on first use (a dataset of
    this size fits, and random training windows would otherwise decompress a chunk per sample)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"no dataset at {self.path}")
        try:
            self.root = zarr.open_group(self.path, mode="r")
        except Exception as exc:  # zarr raises several types for a folder that is not a zarr group
            raise DatasetError(f"{self.path} is not a zarr dataset: {exc}") from exc
        attrs = dict(self.root.attrs)
        if attrs.get("format") != FORMAT:
            raise DatasetError(f"{self.path} is not a {FORMAT} (built by `dbp dataset build`)")
        if attrs.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"{self.path} has format version {attrs.get('format_version')}, this code reads {FORMAT_VERSION}")
        for key in ("layout", "episodes", "split", "stats", "build"):
            if key not in attrs:
                raise DatasetError(f"{self.path} has no {key!r} attribute; rebuild it with `dbp dataset build`")
        self.layout, self.episodes, self.split, self.stats = attrs["layout"], attrs["episodes"], attrs["split"], attrs["stats"]
        self.build = attrs["build"]
        self.cameras: tuple[str, ...] = tuple(self.layout["cameras"])
        self.episode_ends = np.asarray(self.root["meta/episode_ends"][:], dtype=np.int64)
        if len(self.episode_ends) != len(self.episodes) or len(self.episode_ends) == 0:
            raise DatasetError(f"{self.path} is inconsistent: {len(self.episode_ends)} episode ends for "
                               f"{len(self.episodes)} episodes")
        n = int(self.episode_ends[-1])
        for name in self.array_names():
            if self.root[f"data/{name}"].shape[0] != n:
                raise DatasetError(f"{self.path}: data/{name} has {self.root[f'data/{name}'].shape[0]} steps, "
                                   f"the episodes {n}")
        listed = sorted(self.split.get("train", []) + self.split.get("val", []))
        if listed != list(range(len(self.episodes))):
            raise DatasetError(f"{self.path}: the train/val split does not list every episode exactly once")
        self._cache: dict[str, np.ndarray] = {}

    def array_names(self) -> list[str]:
        names = ["stamp_ns", "state", "action", "image_age_ms"] + [f"images/{c}" for c in self.cameras]
        return names + (["objects"] if self.layout.get("objects") else [])

    @property
    def steps(self) -> int:
        return int(self.episode_ends[-1])

    def array(self, name: str) -> np.ndarray:
        if name not in self._cache:
            if name not in self.array_names():
                raise DatasetError(f"{self.path} has no array {name!r}; it has {self.array_names()}")
            self._cache[name] = self.root[f"data/{name}"][:]
        return self._cache[name]

    def frames(self, camera: str, count: int, split: str = "train") -> np.ndarray:
        """`count` frames of `camera` spread evenly over the split's steps (read without loading the rest)."""
        if camera not in self.cameras:
            raise DatasetError(f"{self.path} has no camera {camera!r}; it has {list(self.cameras)}")
        steps = np.concatenate([np.arange(s.start, s.stop) for s in map(self.episode_slice, self.split.get(split, []))]
                               or [np.zeros(0, np.int64)])
        if not len(steps):
            raise DatasetError(f"{self.path}: the {split!r} split has no steps")
        chosen = steps[np.linspace(0, len(steps) - 1, min(count, len(steps))).round().astype(np.int64)]
        return np.asarray(self.root[f"data/images/{camera}"].oindex[chosen])

    def episode_slice(self, episode: int) -> slice:
        start = int(self.episode_ends[episode - 1]) if episode else 0
        return slice(start, int(self.episode_ends[episode]))


class WindowDataset:
    """Training windows of `horizon` steps from one split: the first `n_obs_steps` give the observation,
    all `horizon` the action chunk. Windows overlap episode edges by repeating the edge step, as in
    Diffusion Policy's sampler (n_obs_steps - 1 before, n_action_steps - 1 after). A BatchSource."""

    def __init__(self, dataset: Dataset, split: str, *, n_obs_steps: int, horizon: int, n_action_steps: int,
                 use_objects: bool = False, cameras: tuple[str, ...] | None = None, neighbours: int = 0) -> None:
        """`cameras`: the cameras to read (default: all the dataset has; () for none). `neighbours`: also
        give each window's action chunks of the `neighbours` windows of OTHER episodes whose observed
        state is nearest (`neighbour_action` [B, K, T, D]: extra positives for DBP's drift field)."""
        if split not in dataset.split:
            raise DatasetError(f"{dataset.path} has no {split!r} split; splits: {sorted(dataset.split)}")
        episodes = dataset.split[split]
        if not episodes:
            raise DatasetError(f"{dataset.path}: the {split!r} split is empty")
        if use_objects and not dataset.layout.get("objects"):
            raise DatasetError(f"{dataset.path} has no object poses; build it with --objects for state-based policies")
        self.dataset, self.n_obs_steps, self.horizon = dataset, n_obs_steps, horizon
        self.use_objects = use_objects
        windows = []
        for episode in episodes:
            s = dataset.episode_slice(episode)
            length = s.stop - s.start
            starts = np.arange(-(n_obs_steps - 1), max(length - horizon + n_action_steps, 1 - (n_obs_steps - 1)))
            offsets = np.clip(starts[:, None] + np.arange(horizon)[None, :], 0, length - 1)
            windows.append(s.start + offsets)
        self.index = torch.from_numpy(np.concatenate(windows))
        state = dataset.array("state")
        self.joint_dim = int(state.shape[1])  # the state's first columns; the object poses follow
        if use_objects:
            state = np.concatenate([state, dataset.array("objects")], axis=1)
        self.state = torch.from_numpy(state)
        self.action = torch.from_numpy(dataset.array("action"))
        cameras = dataset.cameras if cameras is None else tuple(cameras)
        missing = sorted(set(cameras) - set(dataset.cameras))
        if missing:
            raise DatasetError(f"{dataset.path} has no camera(s) {missing}; it has {list(dataset.cameras)}")
        self.images = {cam: torch.from_numpy(dataset.array(f"images/{cam}")) for cam in cameras}
        self.episode_of = torch.from_numpy(np.concatenate([np.full(len(w), i) for i, w in enumerate(windows)]))
        self.neighbours = self._nearest_other_episode_windows(neighbours) if neighbours > 0 else None

    def _nearest_other_episode_windows(self, k: int, block: int = 1024) -> torch.Tensor:
        """[windows, k]: per window, the windows of other episodes nearest in observed state (standardised)."""
        others = len(self.index) - int(torch.bincount(self.episode_of).max())  # the fewest any window has
        if k > others:
            raise DatasetError(f"{self.dataset.path}: {k} neighbours asked, but a window has only {others} windows "
                               "of other episodes in the split")
        obs = self.state[self.index[:, : self.n_obs_steps]].flatten(1).double()
        obs = ((obs - obs.mean(0)) / obs.std(0).clamp_min(1e-6)).float()
        sq = (obs * obs).sum(1)
        out = []
        for start in range(0, len(obs), block):
            query = obs[start : start + block]
            dist = sq[start : start + block, None] + sq[None, :] - 2 * query @ obs.T
            dist[self.episode_of[start : start + block, None] == self.episode_of[None, :]] = float("inf")
            out.append(dist.topk(k, dim=1, largest=False).indices)
        return torch.cat(out)

    @property
    def state_dim(self) -> int:
        return int(self.state.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.action.shape[1])

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        window = self.index[indices]  # [B, horizon] global step indices
        obs = window[:, : self.n_obs_steps]
        out: dict[str, torch.Tensor | dict[str, torch.Tensor]] = {"state": self.state[obs], "action": self.action[window]}
        if self.neighbours is not None:
            out["neighbour_action"] = self.action[self.index[self.neighbours[indices]]]  # [B, K, T, D]
        if self.images:
            out["images"] = {cam: img[obs].permute(0, 1, 4, 2, 3) for cam, img in self.images.items()}
        return out


@dataclass(frozen=True)
class ReadThroughput:
    load_seconds: float  # zarr (disk, decompression) -> memory, whole dataset
    load_mb_per_s: float  # uncompressed megabytes per second
    batches_per_s: float
    samples_per_s: float


def measure_read_throughput(dataset: Dataset, *, batch_size: int = 64, n_obs_steps: int = 2, horizon: int = 16,
                            n_action_steps: int = 8, batches: int = 200, seed: int = 0) -> ReadThroughput:
    """How fast training can read this dataset: the one-off load, then random batches of windows."""
    import time

    start = time.perf_counter()
    loaded = sum(dataset.array(name).nbytes for name in dataset.array_names())
    load_seconds = time.perf_counter() - start
    split = "train" if dataset.split["train"] else "val"
    windows = WindowDataset(dataset, split, n_obs_steps=n_obs_steps, horizon=horizon, n_action_steps=n_action_steps)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(batches):
        windows.batch(torch.randint(len(windows), (batch_size,), generator=generator))
    seconds = time.perf_counter() - start
    return ReadThroughput(load_seconds, loaded / 1e6 / max(load_seconds, 1e-9), batches / seconds,
                          batches * batch_size / seconds)
