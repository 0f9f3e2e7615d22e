"""rosbag2 episodes, written and read with `rosbags` (no ROS install needed).

One bag per episode. Metadata version 8 is always written: Humble cannot read version 9. MCAP is the
default storage, sqlite3 on request; messages are CDR-serialised with the Humble or Jazzy typestore.
The episode's own description (task, seed, success, ...) is stored twice: as the bag's custom metadata
and as one JSON `std_msgs/msg/String` on EPISODE_INFO_TOPIC, for tools that ignore custom metadata.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

DISTROS: dict[str, Stores] = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 8  # Humble's rosbag2 cannot read version 9 metadata
EPISODE_INFO_TOPIC = "/episode/info"
EPISODE_INFO_TYPE = "std_msgs/msg/String"
EPISODE_INFO_KEY = "dbp_control.episode"
# Bags being written live in OUT/.recording/<name> and move to OUT/<name> when complete: rosbag2 names the
# storage file after its folder, so the unfinished bag already has its final name.
STAGING_DIR = ".recording"


class BagError(RuntimeError):
    """A bag that cannot be written or read as asked (existing path, unknown topic, damaged file)."""


# The services the graph offers, as std_srvs defines them (request, response); rosbags' typestores hold
# messages only, so `typestore` adds their `<type>_Request` and `<type>_Response` messages. An empty request
# carries the one uint8 member rosidl gives every empty structure.
SERVICE_DEFINITIONS: dict[str, tuple[str, str]] = {
    "std_srvs/srv/SetBool": ("bool data", "bool success\nstring message"),
    "std_srvs/srv/Trigger": ("uint8 structure_needs_at_least_one_member", "bool success\nstring message"),
}


def service_message_fields(srv_type: str) -> dict[str, Any]:
    """`<srv_type>_Request` and `<srv_type>_Response` as rosbags field definitions."""
    if srv_type not in SERVICE_DEFINITIONS:
        raise ValueError(f"unknown service type {srv_type!r}; known: {sorted(SERVICE_DEFINITIONS)}")
    fields = {}
    for suffix, text in zip(("_Request", "_Response"), SERVICE_DEFINITIONS[srv_type]):
        # rosbags names parsed types pkg/msg/Name: parse under a placeholder name, register under the real one
        ((_, definition),) = get_types_from_msg(text, "dbp_control/msg/Placeholder").items()
        fields[f"{srv_type}{suffix}"] = definition
    return fields


@cache
def typestore(distro: str) -> Typestore:
    if distro not in DISTROS:
        raise ValueError(f"unknown ROS distro {distro!r}; known: {sorted(DISTROS)}")
    store = get_typestore(DISTROS[distro])
    for srv_type in SERVICE_DEFINITIONS:
        store.register(service_message_fields(srv_type))
    return store


# -- message builders (rosbags dataclasses, identical in layout to the ROS 2 messages) -----------------


def header(distro: str, stamp_ns: int, frame_id: str) -> Any:
    ts = typestore(distro)
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)


def stamp_ns_of(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def image_msg(distro: str, stamp_ns: int, frame_id: str, rgb: np.ndarray) -> Any:
    """uint8 [H, W, 3] RGB -> sensor_msgs/msg/Image (encoding rgb8)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    height, width, _ = rgb.shape
    return typestore(distro).types["sensor_msgs/msg/Image"](
        header=header(distro, stamp_ns, frame_id), height=height, width=width, encoding="rgb8",
        is_bigendian=0, step=width * 3, data=np.ascontiguousarray(rgb).reshape(-1),
    )


def joint_state_msg(distro: str, stamp_ns: int, names: list[str], position: np.ndarray,
                    velocity: np.ndarray | None = None) -> Any:
    position = np.ascontiguousarray(position, dtype=np.float64)
    if len(names) != len(position):
        raise ValueError(f"{len(names)} joint names but {len(position)} positions")
    velocity = np.zeros_like(position) if velocity is None else np.ascontiguousarray(velocity, dtype=np.float64)
    return typestore(distro).types["sensor_msgs/msg/JointState"](
        header=header(distro, stamp_ns, ""), name=list(names), position=position, velocity=velocity,
        effort=np.zeros(0, dtype=np.float64),
    )


def camera_info_msg(distro: str, stamp_ns: int, frame_id: str, intrinsics: Any) -> Any:
    """sensor_msgs/msg/CameraInfo from a calibration.CameraIntrinsics."""
    ts = typestore(distro)
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=header(distro, stamp_ns, frame_id), height=intrinsics.height, width=intrinsics.width,
        distortion_model=intrinsics.distortion_model, d=intrinsics.d.astype(np.float64),
        k=intrinsics.k.reshape(-1), r=intrinsics.r.reshape(-1), p=intrinsics.p.reshape(-1),
        binning_x=0, binning_y=0, roi=roi,
    )


def float64_array_msg(distro: str, values: np.ndarray) -> Any:
    ts = typestore(distro)
    layout = ts.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    return ts.types["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.ascontiguousarray(values, dtype=np.float64))


def joint_trajectory_msg(distro: str, stamp_ns: int, frame_id: str, names: Sequence[str], positions: np.ndarray,
                         step_s: float, first_s: float = 0.0) -> Any:
    """[T, D] joint positions -> trajectory_msgs/msg/JointTrajectory, point k due `first_s + k * step_s` after
    the header stamp (a zero stamp: start on arrival, as joint_trajectory_controller reads it)."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != len(names):
        raise ValueError(f"positions must be [T, {len(names)}] for joints {names}, got {positions.shape}")
    t = typestore(distro).types
    empty = np.zeros(0, dtype=np.float64)

    def due(k: int) -> Any:
        sec, nanosec = divmod(round((first_s + k * step_s) * 1e9), 1_000_000_000)
        return t["builtin_interfaces/msg/Duration"](sec=sec, nanosec=nanosec)

    return t["trajectory_msgs/msg/JointTrajectory"](header=header(distro, stamp_ns, frame_id), joint_names=list(names),
                                                     points=[t["trajectory_msgs/msg/JointTrajectoryPoint"](
                                                         positions=row, velocities=empty, accelerations=empty,
                                                         effort=empty, time_from_start=due(k))
                                                         for k, row in enumerate(positions)])


def trajectory_positions(msg: Any, joints: Sequence[str]) -> tuple[np.ndarray, float]:
    """trajectory_msgs/msg/JointTrajectory -> ([T, len(joints)] positions in `joints` order, seconds between its
    first two points; 0 with fewer). Other joints, or a point without one position per joint, are errors."""
    names = list(msg.joint_names)
    if sorted(names) != sorted(joints):
        raise ValueError(f"trajectory joints {names} are not the robot's {list(joints)}")
    for k, point in enumerate(msg.points):
        if len(point.positions) != len(names):
            raise ValueError(f"trajectory point {k} has {len(point.positions)} positions for {len(names)} joints")
    order = [names.index(j) for j in joints]
    positions = np.array([np.asarray(p.positions, dtype=np.float64)[order] for p in msg.points]) if msg.points \
        else np.zeros((0, len(joints)))
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    return positions, times[1] - times[0] if len(times) > 1 else 0.0


def pose_array_msg(distro: str, stamp_ns: int, frame_id: str, poses: np.ndarray) -> Any:
    """[N, 7] rows of position and quaternion (w, x, y, z) -> geometry_msgs/msg/PoseArray."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 7:
        raise ValueError(f"poses must be [N, 7] (x, y, z, qw, qx, qy, qz), got {poses.shape}")
    t = typestore(distro).types
    return t["geometry_msgs/msg/PoseArray"](header=header(distro, stamp_ns, frame_id), poses=[
        t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=p[0], y=p[1], z=p[2]),
                                    orientation=t["geometry_msgs/msg/Quaternion"](x=p[4], y=p[5], z=p[6], w=p[3]))
        for p in poses
    ])


def poses_of(msg: Any) -> np.ndarray:
    """geometry_msgs/msg/PoseArray -> [N, 7] (x, y, z, qw, qx, qy, qz)."""
    return np.array([[p.position.x, p.position.y, p.position.z, p.orientation.w, p.orientation.x, p.orientation.y,
                      p.orientation.z] for p in msg.poses], dtype=np.float64).reshape(-1, 7)


# -- writing ---------------------------------------------------------------------------------------


class EpisodeBagWriter:
    """Writes one episode. Refuses an existing path, so nothing recorded is ever overwritten; on an
    exception inside `with`, what was written so far is closed into a readable bag."""

    def __init__(self, path: Path, *, topics: Mapping[str, str], storage: str = "mcap", distro: str = "humble",
                 compress: bool = False) -> None:
        """`compress`: rosbag2 per-message zstd compression (rendered images shrink many times over)."""
        if storage not in STORAGES:
            raise ValueError(f"unknown bag storage {storage!r}; known: {sorted(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} already exists; refusing to overwrite a recorded episode")
        self.distro = distro
        self._ts = typestore(distro)
        unknown = sorted(t for t in topics.values() if t not in self._ts.types)
        if unknown:
            raise ValueError(f"message types unknown to the {distro} typestore: {unknown}")
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        if compress:
            self._writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
        self._writer.open()
        self._connections = {
            topic: (self._writer.add_connection(topic, msgtype, typestore=self._ts), msgtype)
            for topic, msgtype in {**topics, EPISODE_INFO_TOPIC: EPISODE_INFO_TYPE}.items()
        }
        self._last_stamp = 0
        self._closed = False

    def write(self, topic: str, stamp_ns: int, msg: Any) -> None:
        if topic not in self._connections or topic == EPISODE_INFO_TOPIC:
            raise BagError(f"topic {topic!r} was not declared for this bag (declared: {sorted(self._connections)})")
        connection, msgtype = self._connections[topic]
        self._writer.write(connection, int(stamp_ns), self._ts.serialize_cdr(msg, msgtype))
        self._last_stamp = max(self._last_stamp, int(stamp_ns))

    def close(self, info: Mapping[str, Any] | None = None) -> None:
        """Finish the bag, storing `info` (JSON-serialisable) as the episode description."""
        if self._closed:
            return
        self._closed = True
        try:
            if info is not None:
                text = json.dumps(dict(info), sort_keys=True)
                connection, msgtype = self._connections[EPISODE_INFO_TOPIC]
                msg = self._ts.types[EPISODE_INFO_TYPE](data=text)
                self._writer.write(connection, self._last_stamp, self._ts.serialize_cdr(msg, msgtype))
                self._writer.set_custom_data(EPISODE_INFO_KEY, text)
            self._writer.close()
        except BaseException:
            with suppress(Exception):  # e.g. a full disk: at least release the files
                self._writer.abort()
            raise

    def __enter__(self) -> EpisodeBagWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
            return
        with suppress(Exception):  # the exception in flight is the one to report
            self.close()


# -- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any


def read_episode_info(path: Path) -> dict[str, Any] | None:
    """The episode description, or None when the bag has none (e.g. an aborted recording)."""
    for message in read_bag(path, topics=[EPISODE_INFO_TOPIC]):
        return json.loads(message.msg.data)
    return None


def read_bag(path: Path, *, topics: list[str] | None = None, optional_topics: Collection[str] = (),
             distro: str = "humble") -> Iterator[BagMessage]:
    """Messages in log-time order, deserialised. `topics` restricts the topics; a requested topic the
    bag lacks is an error naming it. `optional_topics` are read too where the bag has them."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"no bag at {path}")
    ts = typestore(distro)
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several types for damaged metadata or storage files
        raise BagError(f"cannot open bag {path} (damaged or truncated?): {exc}") from exc
    try:
        present = {c.topic for c in reader.connections}
        missing = sorted(set(topics or []) - present)
        if missing:
            raise BagError(f"bag {path} has no topic(s) {missing}; it has {sorted(present)}")
        connections = [c for c in reader.connections
                       if topics is None or c.topic in topics or c.topic in optional_topics]
        try:
            for connection, log_time, raw in reader.messages(connections=connections):
                yield BagMessage(connection.topic, connection.msgtype, log_time, ts.deserialize_cdr(raw, connection.msgtype))
        except Exception as exc:
            raise BagError(f"bag {path} is damaged: {exc}") from exc
    finally:
        reader.close()
