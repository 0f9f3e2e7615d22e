"""A planar task with a known bimodal expert: go from a start to a goal past a round obstacle that sits
half-way between them, on the left or on the right with equal probability.

Observation: [start_x, start_y, goal_x, goal_y]. Action chunk: `horizon` waypoints [x, y] after the start.
The expert path is the straight line plus a lateral bump side * amplitude * sin(pi s), s in (0, 1]; the
side (+1 left, -1 right of the direction of travel) is a fair coin and the amplitude is uniform in a band
that clears the obstacle, so each mode has a continuous spread as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ObstacleTask:
    horizon: int = 16
    obstacle_radius: float = 0.2
    amplitude_low: float = 0.3  # > radius: every expert path clears the obstacle
    amplitude_high: float = 0.45

    @property
    def obs_dim(self) -> int:
        return 4

    def sample_observations(self, rng: np.random.Generator, n: int) -> np.ndarray:
        start = np.stack([rng.uniform(-1.0, -0.8, n), rng.uniform(-0.3, 0.3, n)], axis=-1)
        goal = np.stack([rng.uniform(0.8, 1.0, n), rng.uniform(-0.3, 0.3, n)], axis=-1)
        return np.concatenate([start, goal], axis=-1)

    def _frame(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        start, goal = obs[..., :2], obs[..., 2:]
        direction = goal - start
        normal = np.stack([-direction[..., 1], direction[..., 0]], axis=-1) / np.linalg.norm(direction, axis=-1, keepdims=True)
        s = np.arange(1, self.horizon + 1) / self.horizon
        return start, direction, normal, s

    def path(self, obs: np.ndarray, lateral: np.ndarray) -> np.ndarray:
        """obs [N, 4], signed lateral amplitude [N] -> waypoints [N, horizon, 2]."""
        start, direction, normal, s = self._frame(obs)
        bump = lateral[:, None] * np.sin(np.pi * s)[None, :]
        return start[:, None, :] + s[None, :, None] * direction[:, None, :] + bump[..., None] * normal[:, None, :]

    def expert(self, rng: np.random.Generator, obs: np.ndarray) -> np.ndarray:
        side = rng.choice([-1.0, 1.0], size=len(obs))
        amplitude = rng.uniform(self.amplitude_low, self.amplitude_high, size=len(obs))
        return self.path(obs, side * amplitude)

    def obstacle_center(self, obs: np.ndarray) -> np.ndarray:
        return (obs[..., :2] + obs[..., 2:]) / 2

    def mode_of(self, obs: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        """+1 (left) / -1 (right): the side of the obstacle the chunk's middle waypoint lies on."""
        _, _, normal, _ = self._frame(obs)
        mid = chunks[:, self.horizon // 2 - 1] - self.obstacle_center(obs)
        return np.where((mid * normal).sum(-1) >= 0, 1.0, -1.0)

    def collides(self, obs: np.ndarray, chunks: np.ndarray, substeps: int = 8) -> np.ndarray:
        """Whether the polyline start -> waypoints enters the obstacle (checked between waypoints too)."""
        points = np.concatenate([obs[:, None, :2], chunks], axis=1)
        t = np.linspace(0, 1, substeps, endpoint=False)[None, None, :, None]
        dense = points[:, :-1, None] + t * (points[:, 1:, None] - points[:, :-1, None])
        dist = np.linalg.norm(dense - self.obstacle_center(obs)[:, None, None, :], axis=-1)
        return (dist < self.obstacle_radius).any(axis=(1, 2))

    def distance_to_nearest_mode(self, obs: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        """RMS waypoint distance [N] to the closer of the two mean expert paths."""
        mean_amp = (self.amplitude_low + self.amplitude_high) / 2
        ones = np.ones(len(obs))
        errors = [
            np.sqrt(((chunks - self.path(obs, sign * mean_amp * ones)) ** 2).sum(-1).mean(-1)) for sign in (-1.0, 1.0)
        ]
        return np.minimum(*errors)


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased energy distance between sample sets x [n, d] and y [m, d] (0 in expectation when
    they come from one distribution)."""

    def mean_pairwise(a: np.ndarray, b: np.ndarray, same: bool) -> float:
        d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
        if same:
            n = len(a)
            return float(d.sum() / (n * (n - 1)))
        return float(d.mean())

    return 2 * mean_pairwise(x, y, False) - mean_pairwise(x, x, True) - mean_pairwise(y, y, True)
