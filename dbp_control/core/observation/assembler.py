"""The observation node's logic, without ROS: camera frames and joint states in, at the control rate an
observation of the freshest joint state with the latest synchronised image set, and each input's age.

Frames and joint states are matched by `ApproximateTimeSync` (the dataset compiler does the same, so
training saw what the robot sees). Inputs that are stale (older than `max_age_s` on arrival) or out of
order (not newer than the last one on that input) are dropped and counted, never waited for. History
for the policy (`n_obs_steps` observations `step_s` apart, as in training) is kept here too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dbp_control.core.observation.sync import ApproximateTimeSync

NS = 1_000_000_000


@dataclass(frozen=True)
class ImageSet:
    stamp_ns: int  # the newest frame's stamp
    frames: dict[str, Any]  # camera -> whatever the caller pushed (decoded frames, features, ...)


@dataclass(frozen=True)
class Observation:
    stamp_ns: int  # the joint state's stamp: the time the observation describes
    state: np.ndarray
    images: ImageSet | None
    ages_ms: dict[str, float]  # per input: now - its stamp


@dataclass
class InputStats:
    received: int = 0
    stale: int = 0
    out_of_order: int = 0


@dataclass
class AssemblerStats:
    inputs: dict[str, InputStats] = field(default_factory=dict)
    observations: int = 0
    not_ready: int = 0  # control ticks with no complete observation yet


class ObservationAssembler:
    def __init__(self, cameras: Sequence[str], *, queue_size: int, slop_s: float, max_age_s: float = 0.5,
                 convert: Callable[[str, Any], Any] = lambda camera, msg: msg) -> None:
        """`convert(camera, msg)` runs once per synchronised frame (e.g. decode, resize, encode features)."""
        self.cameras = tuple(cameras)
        self.max_age_ns = int(max_age_s * NS)
        self.convert = convert
        self.sync = ApproximateTimeSync(len(self.cameras) + 1, queue_size, slop_s) if self.cameras else None
        self.stats = AssemblerStats(inputs={name: InputStats() for name in (*self.cameras, "joint_states")})
        self._last_stamp = {name: -1 for name in self.stats.inputs}
        self.joints: tuple[int, np.ndarray] | None = None
        self.images: ImageSet | None = None

    def _accept(self, name: str, stamp_ns: int, now_ns: int) -> bool:
        stats = self.stats.inputs[name]
        stats.received += 1
        if now_ns - stamp_ns > self.max_age_ns:
            stats.stale += 1
            return False
        if stamp_ns <= self._last_stamp[name]:
            stats.out_of_order += 1
            return False
        self._last_stamp[name] = stamp_ns
        return True

    def push_joint_state(self, stamp_ns: int, positions: np.ndarray, now_ns: int) -> None:
        if not self._accept("joint_states", stamp_ns, now_ns):
            return
        self.joints = (stamp_ns, np.asarray(positions, dtype=np.float64))
        if self.sync is not None:
            self._matched(self.sync.push(len(self.cameras), stamp_ns, None))

    def push_image(self, camera: str, stamp_ns: int, msg: Any, now_ns: int) -> None:
        if camera not in self.cameras:
            raise KeyError(f"unknown camera {camera!r}; cameras: {list(self.cameras)}")
        if self._accept(camera, stamp_ns, now_ns):
            self._matched(self.sync.push(self.cameras.index(camera), stamp_ns, (stamp_ns, msg)))  # type: ignore[union-attr]

    def _matched(self, matched: tuple[Any, ...] | None) -> None:
        if matched is None:
            return
        frames = matched[: len(self.cameras)]
        self.images = ImageSet(max(stamp for stamp, _ in frames),
                               {cam: self.convert(cam, msg) for cam, (_, msg) in zip(self.cameras, frames)})

    def ages_ms(self, now_ns: int) -> dict[str, float]:
        """How old the newest joint state and image set are (for diagnostics; counts nothing)."""
        ages = {"joint_states": (now_ns - self.joints[0]) / 1e6} if self.joints is not None else {}
        if self.images is not None:
            ages["images"] = (now_ns - self.images.stamp_ns) / 1e6
        return ages

    def observation(self, now_ns: int) -> Observation | None:
        if self.joints is None or (self.cameras and self.images is None):
            self.stats.not_ready += 1
            return None
        stamp, state = self.joints
        self.stats.observations += 1
        return Observation(stamp, state, self.images, self.ages_ms(now_ns))


class ObservationHistory:
    """The last `n_obs_steps` observations `step_s` apart, as the policy was trained: the newest, and
    for each earlier slot the latest observation at or before `step_s` earlier (padded with the oldest)."""

    def __init__(self, n_obs_steps: int, step_s: float, keep_s: float = 2.0) -> None:
        self.n_obs_steps, self.step_ns = n_obs_steps, int(step_s * NS)
        self._buffer: deque[Observation] = deque()
        self._keep_ns = max(int(keep_s * NS), self.step_ns * n_obs_steps * 2)

    def push(self, obs: Observation) -> None:
        if self._buffer and obs.stamp_ns <= self._buffer[-1].stamp_ns:
            return  # the same joint state again: nothing new
        self._buffer.append(obs)
        while self._buffer and obs.stamp_ns - self._buffer[0].stamp_ns > self._keep_ns:
            self._buffer.popleft()

    def clear(self) -> None:
        """Forget every observation: the next window is padded from the next one, as at an episode's start."""
        self._buffer.clear()

    def window(self) -> list[Observation]:
        if not self._buffer:
            raise ValueError("no observation yet")
        newest = self._buffer[-1]
        out = [newest]
        for k in range(1, self.n_obs_steps):
            due = newest.stamp_ns - k * self.step_ns
            earlier = [o for o in self._buffer if o.stamp_ns <= due]
            out.append(earlier[-1] if earlier else self._buffer[0])
        return out[::-1]
