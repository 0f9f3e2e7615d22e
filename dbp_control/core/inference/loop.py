"""The inference node's logic, without ROS: observations in at the control rate, action chunks out.

Image features are computed once per camera frame (`rgb_features`: the observation node decodes each frame as
it arrives and encodes it on a worker thread) and reused by every control tick until the next frame, so the control rate does
not depend on the cameras. Each chunk carries the stamp of the observation it answers.

The noise z is held for `n_action_steps` chunk steps (the span the policy executes per chunk when it
was trained and evaluated) and then redrawn: replanning at 100 Hz with fresh noise every tick would
hop between the modes of a multimodal policy (grasp this face, then that one) and go nowhere; with z
held, the one-step generator is a smooth function of the observation, so each tick refines the same
plan and still reacts to what the robot sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dbp_control.core.inference.engine import PolicyEngine
from dbp_control.core.observation.assembler import Observation, ObservationHistory
from dbp_control.core.observation.images import resize_rgb


@dataclass(frozen=True)
class Chunk:
    actions: np.ndarray  # [T - n_obs_steps + 1, D] robot units: step 0 is due at `stamp_ns`
    stamp_ns: int  # the observation it answers
    step_s: float  # time between chunk steps


def steps_from_now(chunk: np.ndarray, n_obs_steps: int) -> np.ndarray:
    """The steps of a predicted chunk [T, D] from the newest observation's on. A policy predicts the
    commands of its whole window, which starts at its oldest observation (as the training windows do), so
    step n_obs_steps - 1 is the command due at the newest observation; the steps before it are past."""
    return chunk[n_obs_steps - 1 :]


def rgb_features(engine: PolicyEngine, camera: str, rgb: np.ndarray) -> np.ndarray:
    """A decoded uint8 [H, W, 3] RGB frame -> the camera's features (resized as in the dataset, encoded)."""
    return engine.encode(camera, np.ascontiguousarray(resize_rgb(rgb, engine.image_size(camera))))


class InferenceLoop:
    def __init__(self, engine: PolicyEngine) -> None:
        if not engine.step_hz:
            raise ValueError(f"{engine.model_dir}: the sidecar has no step rate (step_hz)")
        self.engine = engine
        self.step_s = 1.0 / float(engine.step_hz)
        self.history = ObservationHistory(engine.n_obs_steps, self.step_s)
        self.noise_hold_ns = int(engine.n_action_steps * self.step_s * 1e9)
        self._noise: dict[str, np.ndarray] | None = None
        self._noise_since = 0

    def restart(self) -> None:
        """Start over as at an episode's start (the robot was just enabled): the observation history is padded
        from the next observation and the noise redrawn. Otherwise the first plan after a reset or a pause
        would read the jump from the old state to the new one as motion."""
        self.history.clear()
        self._noise = None

    def step(self, obs: Observation, extra_state: np.ndarray | None = None) -> Chunk:
        """`extra_state`: appended to the joint positions (the object poses, for state policies in simulation)."""
        if extra_state is not None:
            obs = Observation(obs.stamp_ns, np.concatenate([obs.state, extra_state]), obs.images, obs.ages_ms)
        self.history.push(obs)
        window = self.history.window()
        state = np.stack([o.state for o in window]).astype(np.float32)
        features = {cam: np.stack([o.images.frames[cam] for o in window]) for cam in self.engine.cameras} \
            if self.engine.cameras else None
        stamp = window[-1].stamp_ns
        if self._noise is None or stamp - self._noise_since >= self.noise_hold_ns:
            self._noise, self._noise_since = self.engine.noise(), stamp
        actions = self.engine.act(state, features, self._noise)
        return Chunk(steps_from_now(actions, self.engine.n_obs_steps), stamp, self.step_s)
