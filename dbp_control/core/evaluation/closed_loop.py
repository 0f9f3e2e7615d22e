"""Closed-loop evaluation in the simulation: the policy sees what the robot's observation node would give
it, predicts a chunk, and `n_action_steps` steps of it are executed from the one due at the newest
observation (receding horizon; `steps_from_now`), streamed to the arms at the command rate by linear
interpolation between consecutive chunk steps.

The same loop runs a torch policy (from a checkpoint) or an exported one (the ONNX Runtime engine)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from dbp_control.core.channels import CHANNELS
from dbp_control.core.inference.loop import steps_from_now
from dbp_control.core.layout import CAMERAS
from dbp_control.core.observation.images import resize_rgb
from dbp_control.core.noise import check_noise_scale
from dbp_control.core.sim.robot import DualArmSim
from dbp_control.core.sim.tasks import make_task

COMMAND_HZ = CHANNELS["left_arm_command"].rate_hz
TIME_LIMIT_S = {"lift": 8.0, "handover": 14.0, "transport": 14.0}  # about twice the experts' schedules
RENDER_SIZE = (240, 320)  # what `dbp sim record` renders; images are resized from it as in the dataset


class ChunkPolicy(Protocol):
    """What the loop needs: the torch wrapper below and `PolicyEngine` both provide it."""

    n_obs_steps: int
    n_action_steps: int
    cameras: tuple[str, ...]
    state_keys: tuple[str, ...]

    def image_size(self, camera: str) -> tuple[int, int]: ...

    def predict(self, state: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray: ...


class TorchChunkPolicy:
    """A checkpoint's policy behind the ChunkPolicy interface (EMA weights, seeded sampling, its noise scaled
    by `noise_scale` as `Policy.predict_chunk` describes)."""

    def __init__(self, policy: torch.nn.Module, state_keys: tuple[str, ...], *, seed: int = 0,
                 noise_scale: float = 1.0) -> None:
        self.noise_scale = check_noise_scale(noise_scale)
        self.policy = policy.eval()
        c = policy.config
        self.n_obs_steps, self.n_action_steps, self.cameras = c.n_obs_steps, c.n_action_steps, tuple(c.cameras)
        self.state_keys = tuple(state_keys)
        self.generator = torch.Generator().manual_seed(seed)

    def image_size(self, camera: str) -> tuple[int, int]:
        return tuple(self.policy.config.image_shape)  # type: ignore[return-value]

    @torch.no_grad()
    def predict(self, state: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        tensors = {cam: torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None]
                   for cam, frames in (images or {}).items()}
        chunk = self.policy.predict_chunk(torch.from_numpy(state).float()[None], tensors or None,
                                          generator=self.generator, noise_scale=self.noise_scale)
        return chunk[0].numpy()


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    seconds: float  # simulated time until success or the time limit
    chunks: int
    frames: list[np.ndarray] = field(default_factory=list)  # head camera, for the image strip


def observe(sim: DualArmSim, policy: ChunkPolicy) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    parts = [sim.joint_state().position]
    if "objects" in policy.state_keys:
        parts.append(sim.object_poses().reshape(-1))
    images = {cam: resize_rgb(sim.render(cam), policy.image_size(cam)) for cam in policy.cameras}
    return np.concatenate(parts).astype(np.float32), images


def rollout(policy: ChunkPolicy, sim: DualArmSim, task_name: str, seed: int, *, step_hz: float,
            time_limit_s: float | None = None, frame_every_s: float | None = None) -> EpisodeResult:
    task = make_task(task_name)
    task.reset(sim, seed)
    limit = time_limit_s if time_limit_s is not None else TIME_LIMIT_S.get(task_name, 10.0)
    substeps = max(1, round(COMMAND_HZ / step_hz))
    dt = 1.0 / (step_hz * substeps)
    history: deque[tuple[np.ndarray, dict[str, np.ndarray]]] = deque(maxlen=policy.n_obs_steps)
    frames: list[np.ndarray] = []
    chunks = 0
    next_frame = 0.0
    chunk = np.empty(0)
    step_in_chunk = policy.n_action_steps  # predict at the first step
    while sim.time < limit - 1e-9:
        obs = observe(sim, policy)
        while len(history) < policy.n_obs_steps - 1:
            history.append(obs)  # pad the start with the first observation, as the training windows do
        history.append(obs)
        if frame_every_s is not None and sim.time >= next_frame - 1e-9:
            frames.append(sim.render("head"))
            next_frame += frame_every_s
        if step_in_chunk >= policy.n_action_steps:
            state = np.stack([s for s, _ in history])
            images = {cam: np.stack([i[cam] for _, i in history]) for cam in policy.cameras}
            chunk = steps_from_now(policy.predict(state, images), policy.n_obs_steps)
            if not np.isfinite(chunk).all():
                raise FloatingPointError(f"the policy returned NaN/inf at t={sim.time:.2f} s (seed {seed})")
            chunks += 1
            step_in_chunk = 0
        start, end = chunk[step_in_chunk], chunk[min(step_in_chunk + 1, len(chunk) - 1)]
        for j in range(substeps):
            sim.set_targets(start + (end - start) * (j / substeps))
            sim.step(dt)
            task.observe(sim)
        step_in_chunk += 1
        if task.success(sim):
            return EpisodeResult(seed, True, sim.time, chunks, frames)
    return EpisodeResult(seed, False, sim.time, chunks, frames)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Evaluation:
    task: str
    episodes: list[EpisodeResult]

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)

    @property
    def rate(self) -> float:
        return self.successes / len(self.episodes)

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, len(self.episodes))


def evaluate(policy: ChunkPolicy, task_name: str, seeds: range, *, step_hz: float, strip_episodes: int = 0,
             progress: Callable[[range], Any] = lambda seeds: seeds) -> Evaluation:
    """Episodes on `seeds` (use seeds the demonstrations did not: e.g. from 100000)."""
    unknown = sorted(set(policy.cameras) - set(CAMERAS))
    if unknown:
        raise ValueError(f"the policy reads camera(s) {unknown} the simulation does not have; cameras: {list(CAMERAS)}")
    sim = DualArmSim(image_size=RENDER_SIZE)
    results = [rollout(policy, sim, task_name, seed, step_hz=step_hz,
                       frame_every_s=1.0 if i < strip_episodes else None)
               for i, seed in enumerate(progress(seeds))]
    return Evaluation(task_name, results)


def save_image_strip(evaluation: Evaluation, path: Path) -> None:
    """One row per recorded episode: the head camera once a second, labelled with the outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [e for e in evaluation.episodes if e.frames]
    if not rows:
        return
    columns = max(len(e.frames) for e in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.3 * len(rows)), squeeze=False)
    for r, episode in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(episode.frames):
                ax.imshow(episode.frames[c])
                if c == 0:
                    ax.set_title(f"seed {episode.seed}: {'success' if episode.success else 'failure'}", fontsize=7,
                                 loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
