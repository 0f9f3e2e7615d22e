"""A small synthetic dataset in the compiled format: smooth joint trajectories, random object poses and
random camera frames. For what needs a dataset's shape but not its content: the tests, and exports whose
latency is measured (a graph's cost does not depend on its weights' values)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dbp_control.core.data.dataset import JOINTS, DatasetWriter, EpisodeArrays


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
        layout = {"joints": JOINTS, "state": {"topic": "/joint_states", "names": JOINTS},
                  "action": {side: {"topic": f"/{side}_arm/forward_position_controller/commands",
                                    "names": [n for n in JOINTS if n.startswith(side)]} for side in ("left", "right")},
                  "cameras": {cam: {"topic": f"/{cam}_camera/color/image_raw", "size": list(image_size)} for cam in cameras},
                  "objects": {"topic": "/sim/object_poses"} if objects else None}
        writer.finish(layout=layout, build={"rate_hz": 10.0}, val_fraction=val_fraction, seed=0)
    return path
