"""A small synthetic dataset in the compiled format: smooth joint trajectories, random object poses and
random camera frames. For what needs a dataset's shape but not its content: the tests, and exports whose
latency is measured (a graph's cost does not depend on its weights' values)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dbp_control.core.data.dataset import BuildConfig, DatasetWriter, EpisodeArrays, dataset_layout


def synthetic_dataset(path: Path, *, cameras: Sequence[str] = (), objects: bool = True, episodes: int = 3,
                      steps: int = 30, image_size: tuple[int, int] = (32, 32), val_fraction: float = 0.34) -> Path:
    rng = np.random.default_rng(0)
    with DatasetWriter(path) as writer:
        for e in range(episodes):
            t = np.arange(steps)
            state = np.sin(t[:, None] / 10 + np.arange(14)).astype(np.float32)
            writer.add(EpisodeArrays(
                stamp_ns=t.astype(np.int64) * 100_000_000, state=state, action=np.roll(state, -1, axis=0),
                image_age_ms=np.zeros(steps, np.float32),
                images={cam: rng.integers(0, 256, (steps, *image_size, 3), dtype=np.uint8) for cam in cameras},
                objects=rng.normal(size=(steps, 14)).astype(np.float32) if objects else None),
                {"source": f"synthetic{e}", "task": "lift", "seed": e, "success": True, "strategy": "x"})
        layout = dataset_layout(BuildConfig(cameras=tuple(cameras), image_size=image_size, objects=objects))
        writer.finish(layout=layout, build={"rate_hz": 10.0}, val_fraction=val_fraction, seed=0)
    return path
