"""Meta-World's own scripted policies as experts written outside this project: a second benchmark
family with state observations (39-D) and 4-D end-effector actions. Optional: `pip install
dbp_control[metaworld]` (Meta-World 3 pins mujoco 3.3.0, the version this project uses).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dbp_control.core.data.dataset import DatasetWriter, EpisodeArrays

STEP_NS = 12_500_000  # Meta-World steps at 80 Hz (frame_skip 5 of a 2.5 ms physics step)


def _import_metaworld() -> tuple[Any, dict[str, Any]]:
    try:
        import gymnasium as gym
        import metaworld  # noqa: F401  (registers the Meta-World/* environments)
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as exc:
        raise ImportError("Meta-World is not installed: pip install 'dbp_control[metaworld]'") from exc
    return gym, ENV_POLICY_MAP


def metaworld_envs() -> list[str]:
    return sorted(_import_metaworld()[1])


@dataclass
class MetaWorldEpisode:
    env_name: str
    seed: int
    success: bool
    observations: np.ndarray  # [T, 39]
    actions: np.ndarray  # [T, 4]


def run_metaworld_expert(env_name: str, seed: int, *, max_steps: int = 500, steps_after_success: int = 10) -> MetaWorldEpisode:
    """One episode of Meta-World's scripted policy; it ends `steps_after_success` steps after success."""
    gym, policies = _import_metaworld()
    if env_name not in policies:
        raise ValueError(f"unknown Meta-World environment {env_name!r}; known: {sorted(policies)}")
    with warnings.catch_warnings():  # gymnasium's checker warns about Meta-World's own spaces on every step
        warnings.simplefilter("ignore", UserWarning)
        return _run(gym.make("Meta-World/MT1", env_name=env_name, seed=seed), policies[env_name](), env_name, seed,
                    max_steps, steps_after_success)


def _run(env: Any, policy: Any, env_name: str, seed: int, max_steps: int, steps_after_success: int) -> MetaWorldEpisode:
    try:
        obs, _ = env.reset(seed=seed)
        observations, actions, success, remaining = [], [], False, steps_after_success
        for _ in range(max_steps):
            action = np.clip(policy.get_action(obs), -1.0, 1.0)
            observations.append(obs)
            actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            success = success or bool(info.get("success"))
            if success:
                remaining -= 1
            if remaining < 0 or terminated or truncated:
                break
    finally:
        env.close()
    return MetaWorldEpisode(env_name, seed, success, np.asarray(observations, np.float32), np.asarray(actions, np.float32))


def write_metaworld_dataset(episodes: Iterable[MetaWorldEpisode], out: Path, *, val_fraction: float = 0.1,
                            seed: int = 0, include_failures: bool = False,
                            progress: Callable[[Iterable[MetaWorldEpisode]], Iterable[MetaWorldEpisode]] = lambda e: e,
                            ) -> tuple[DatasetWriter, list[MetaWorldEpisode]]:
    """Episodes into the project's dataset format (state = observation, action = the 4-D command)."""
    ran: list[MetaWorldEpisode] = []
    with DatasetWriter(out) as writer:
        for episode in progress(episodes):
            ran.append(episode)
            if not episode.success and not include_failures:
                continue
            steps = len(episode.actions)
            writer.add(EpisodeArrays(stamp_ns=np.arange(steps, dtype=np.int64) * STEP_NS, state=episode.observations,
                                     action=episode.actions, image_age_ms=np.full(steps, np.nan, np.float32)),
                       {"source": "metaworld", "task": episode.env_name, "seed": episode.seed, "success": episode.success,
                        "strategy": "metaworld_scripted"})
        if not writer.episodes:
            raise ValueError(f"none of the {len(ran)} Meta-World episodes succeeded; nothing to write")
        layout = {"source": "metaworld", "joints": [], "state": {"topic": None, "names": [f"obs_{i}" for i in range(39)]},
                  "action": {"names": ["dx", "dy", "dz", "gripper"]}, "cameras": {}, "objects": None}
        writer.finish(layout=layout, build={"rate_hz": 1e9 / STEP_NS, "envs": sorted({e.env_name for e in ran})},
                      val_fraction=val_fraction, seed=seed)
    return writer, ran
