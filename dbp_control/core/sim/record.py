"""Record expert episodes through the robot's own channels into rosbag2, one bag per episode.

Every channel is written at its rate from the channel table, stamped with simulated time: joint states,
both arms' commands, each camera's image with its CameraInfo (unless `images=False`), and the
simulation-only object poses. A bag is written under a temporary
name and renamed when complete, so an interrupted run never leaves a half episode under a final name.

With `ExecutionNoise` the arms execute the expert's targets plus a slowly drifting offset while the bag
records the clean targets (DART, Laskey et al. 2017): the expert keeps steering back from where the offset
took the arm, so the demonstrations show how to recover from the small errors a learned policy makes."""

from __future__ import annotations

import errno
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import (
    STAGING_DIR,
    BagError,
    EpisodeBagWriter,
    camera_info_msg,
    float64_array_msg,
    image_msg,
    joint_state_msg,
    pose_array_msg,
)
from dbp_control.core.layout import ARM_JOINTS, CAMERAS, SIDES, joint_names
from dbp_control.core.sim.experts import make_expert
from dbp_control.core.sim.robot import DualArmSim
from dbp_control.core.sim.scene import MOVABLE_OBJECTS
from dbp_control.core.sim.tasks import Task

CONTROL_HZ = CHANNELS["left_arm_command"].rate_hz  # the expert acts at the command rate


@dataclass(frozen=True)
class ExecutionNoise:
    """An offset on every arm joint's executed target (not the grippers'): an Ornstein-Uhlenbeck process of
    stationary standard deviation `std_rad` and time constant `time_constant_s`, drawn anew per episode."""

    std_rad: float
    time_constant_s: float = 0.5

    def __post_init__(self) -> None:
        if not np.isfinite(self.std_rad) or self.std_rad < 0:
            raise ValueError(f"execution noise std must be a finite number of radians >= 0, got {self.std_rad}")
        if not np.isfinite(self.time_constant_s) or self.time_constant_s <= 1.0 / CONTROL_HZ:
            raise ValueError(f"execution noise time constant must be longer than one command period "
                             f"({1.0 / CONTROL_HZ:g} s), got {self.time_constant_s}")


class _JointOffsets:
    """The offsets of one episode: `step()` advances them by one command period and returns all 14."""

    def __init__(self, noise: ExecutionNoise, rng: np.random.Generator) -> None:
        dt = 1.0 / CONTROL_HZ
        self._decay = 1.0 - dt / noise.time_constant_s
        self._kick = noise.std_rad * np.sqrt(2.0 * dt / noise.time_constant_s)  # keeps the std at std_rad
        self._rng = rng
        per_arm = len(joint_names(SIDES[0]))  # an arm's command: its joints, then its gripper (joint_names)
        self._arm = np.array([per_arm * i + j for i in range(len(SIDES)) for j in range(len(ARM_JOINTS))])
        self.offset = np.zeros(per_arm * len(SIDES))

    def step(self) -> np.ndarray:
        self.offset[self._arm] = self._decay * self.offset[self._arm] + self._kick * self._rng.standard_normal(
            len(self._arm))
        return self.offset


@dataclass(frozen=True)
class RecordedEpisode:
    path: Path | None  # None when a failed episode was not kept
    seed: int
    success: bool
    strategy: str
    messages: int
    bytes: int


class _Due:
    """Fires at a channel's rate on the simulation clock."""

    def __init__(self, rate_hz: float) -> None:
        self.period, self.next = 1.0 / rate_hz, 0.0

    def __call__(self, t: float) -> bool:
        if t + 1e-9 < self.next:
            return False
        self.next += self.period
        return True


def _remove_if_empty(folder: Path) -> None:
    if folder.exists() and not any(folder.iterdir()):
        folder.rmdir()


def record_episode(sim: DualArmSim, task: Task, seed: int, out_dir: Path, *, storage: str = "mcap",
                   distro: str = "humble", compress: bool = False, keep_failure: bool = False,
                   images: bool = True, start_ns: int | None = None,
                   execution_noise: ExecutionNoise | None = None) -> RecordedEpisode:
    out_dir = Path(out_dir)
    final = out_dir / f"{task.name}_seed{seed:06d}"
    if final.exists() or final.with_name(final.name + "_failed").exists():
        raise FileExistsError(f"episode {final} already recorded; choose another --out or seeds")
    partial = out_dir / STAGING_DIR / final.name
    if partial.exists():
        shutil.rmtree(partial)  # left by an interrupted run: never a finished episode
    partial.parent.mkdir(parents=True, exist_ok=True)
    task.reset(sim, seed)
    expert = make_expert(sim, task, np.random.default_rng(seed + 1_000_003))
    offsets = (_JointOffsets(execution_noise, np.random.default_rng(seed + 2_000_003))
               if execution_noise is not None and execution_noise.std_rad > 0 else None)
    t0_ns = time.time_ns() if start_ns is None else start_ns
    cameras = CAMERAS if images else ()
    recorded = ["joint_states", *(f"{side}_arm_command" for side in SIDES), "object_poses",
                *(f"{cam}_{kind}" for cam in cameras for kind in ("image", "camera_info"))]
    topics = {CHANNELS[name].topic: CHANNELS[name].msg_type for name in recorded}
    command_due = _Due(CONTROL_HZ)  # both arms' commands
    joints_due = _Due(CHANNELS["joint_states"].rate_hz)
    objects_due = _Due(CHANNELS["object_poses"].rate_hz)
    image_due = {cam: _Due(CHANNELS[f"{cam}_image"].rate_hz) for cam in cameras}  # CameraInfo goes with each image
    messages = 0
    try:
        with EpisodeBagWriter(partial, topics=topics, storage=storage, distro=distro, compress=compress) as bag:
            targets = expert.targets(0.0)
            while sim.time < expert.duration - 1e-9:
                t = sim.time
                stamp = t0_ns + round(t * 1e9)
                if command_due(t):
                    targets = expert.targets(t)
                    sim.set_targets(targets if offsets is None else targets + offsets.step())
                    for i, side in enumerate(SIDES):
                        command = float64_array_msg(distro, targets[7 * i : 7 * i + 7])
                        bag.write(CHANNELS[f"{side}_arm_command"].topic, stamp, command)
                        messages += 1
                if joints_due(t):
                    state = sim.joint_state()
                    bag.write(CHANNELS["joint_states"].topic, stamp,
                              joint_state_msg(distro, stamp, state.names, state.position, state.velocity))
                    messages += 1
                if objects_due(t):
                    objects = CHANNELS["object_poses"]
                    bag.write(objects.topic, stamp, pose_array_msg(distro, stamp, objects.frame_id, sim.object_poses()))
                    messages += 1
                for cam in cameras:
                    if image_due[cam](t):
                        image, info = CHANNELS[f"{cam}_image"], CHANNELS[f"{cam}_camera_info"]
                        bag.write(image.topic, stamp, image_msg(distro, stamp, image.frame_id, sim.render(cam)))
                        bag.write(info.topic, stamp, camera_info_msg(distro, stamp, info.frame_id, sim.intrinsics[cam]))
                        messages += 2
                sim.step(sim.model.opt.timestep)
                if command_due.next - sim.time < 1e-9:  # a control step ends: let the task observe it
                    task.observe(sim)
            success = task.success(sim)
            bag.close({"task": task.name, "seed": seed, "success": success, "strategy": expert.strategy,
                       "control_hz": CONTROL_HZ, "image_size": list(sim.image_size) if images else None,
                       "objects": list(MOVABLE_OBJECTS),
                       "execution_noise": None if offsets is None else asdict(execution_noise)})
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)  # earlier episodes are finished bags outside staging
        _remove_if_empty(partial.parent)
        if exc.errno == errno.ENOSPC:
            raise BagError(f"disk full while recording {final.name}; its partial bag was removed, "
                           f"earlier episodes in {out_dir} are intact") from exc
        raise
    size = sum(f.stat().st_size for f in partial.iterdir())
    if not success and not keep_failure:
        shutil.rmtree(partial)
        _remove_if_empty(partial.parent)
        return RecordedEpisode(None, seed, False, expert.strategy, messages, 0)
    target = final if success else final.with_name(final.name + "_failed")
    partial.rename(target)
    _remove_if_empty(partial.parent)
    return RecordedEpisode(target, seed, success, expert.strategy, messages, size)
