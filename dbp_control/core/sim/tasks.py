"""Tasks on the dual-arm scene: randomised initial state by seed, a success check, a dense reward."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dbp_control.core.sim.robot import DualArmSim

TABLE_TOP_Z = 0.0
CUBE_HALF = 0.025


@dataclass
class LiftTask:
    """Single arm (the left one): lift the cube at least `lift_height` off the table."""

    name: str = "lift"
    lift_height: float = 0.08

    def reset(self, sim: DualArmSim, seed: int) -> None:
        rng = np.random.default_rng(seed)
        sim.reset()
        x, y = rng.uniform(-0.45, -0.25), rng.uniform(0.45, 0.6)
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        sim.set_object_pose("cube", np.array([x, y, TABLE_TOP_Z + CUBE_HALF]), yaw)

    def cube_height(self, sim: DualArmSim) -> float:
        return float(sim.object_position("cube")[2] - CUBE_HALF - TABLE_TOP_Z)

    def success(self, sim: DualArmSim) -> bool:
        return self.cube_height(sim) >= self.lift_height

    def reward(self, sim: DualArmSim) -> float:
        """Dense: approach the cube, then raise it (0 .. 2)."""
        reach = np.linalg.norm(sim.site_position("left_tcp") - sim.object_position("cube"))
        return float(1 - np.tanh(5 * reach) + min(self.cube_height(sim), self.lift_height) / self.lift_height)


TASKS = {"lift": LiftTask}


def make_task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]()
