"""Tasks on the dual-arm scene: randomised initial state by seed, a success check, a dense reward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dbp_control.core.layout import SIDES
from dbp_control.core.sim.robot import DualArmSim
from dbp_control.core.sim.scene import BOX_HEIGHT, BOX_INNER, BOX_POS

TABLE_TOP_Z = 0.0
CUBE_HALF = 0.025
HELD_DISTANCE = 0.04  # cube centre within this of a tool centre point: that arm holds it


def cube_height(sim: DualArmSim) -> float:
    return float(sim.object_position("cube")[2] - CUBE_HALF - TABLE_TOP_Z)


def holding_arm(sim: DualArmSim, min_height: float = 0.03) -> str | None:
    """The arm whose tool centre point is at the lifted cube, or None."""
    if cube_height(sim) < min_height:
        return None
    cube = sim.object_position("cube")
    for side in SIDES:
        if np.linalg.norm(sim.site_position(f"{side}_tcp") - cube) < HELD_DISTANCE:
            return side
    return None


class Task(Protocol):
    name: str

    def reset(self, sim: DualArmSim, seed: int) -> None: ...

    def observe(self, sim: DualArmSim) -> None: ...

    def success(self, sim: DualArmSim) -> bool: ...

    def reward(self, sim: DualArmSim) -> float: ...


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

    def observe(self, sim: DualArmSim) -> None:
        """Called after every control step; lift needs no history."""

    def success(self, sim: DualArmSim) -> bool:
        return cube_height(sim) >= self.lift_height

    def reward(self, sim: DualArmSim) -> float:
        """Dense: approach the cube, then raise it (0 .. 2)."""
        reach = np.linalg.norm(sim.site_position("left_tcp") - sim.object_position("cube"))
        return float(1 - np.tanh(5 * reach) + min(cube_height(sim), self.lift_height) / self.lift_height)


@dataclass
class HandoverTask:
    """Either arm lifts the cube from the middle of the table and hands it to the other, which ends up
    holding it at least `min_height` up while the first arm has let go and moved away."""

    name: str = "handover"
    min_height: float = 0.1
    first_holder: str | None = None

    def reset(self, sim: DualArmSim, seed: int) -> None:
        rng = np.random.default_rng(seed)
        sim.reset()
        x, y, yaw = rng.uniform(-0.08, 0.08), rng.uniform(0.45, 0.55), rng.uniform(-0.3, 0.3)
        sim.set_object_pose("cube", np.array([x, y, TABLE_TOP_Z + CUBE_HALF]), yaw)
        self.first_holder = None

    def observe(self, sim: DualArmSim) -> None:
        if self.first_holder is None:
            self.first_holder = holding_arm(sim)

    def success(self, sim: DualArmSim) -> bool:
        holder = holding_arm(sim, self.min_height)
        if self.first_holder is None or holder in (None, self.first_holder):
            return False
        away = np.linalg.norm(sim.site_position(f"{self.first_holder}_tcp") - sim.object_position("cube"))
        return bool(away > 2 * HELD_DISTANCE)

    def reward(self, sim: DualArmSim) -> float:
        """Dense: raise the cube (0 .. 1), plus 1 while the second arm holds it."""
        holder = holding_arm(sim)
        handed = self.first_holder is not None and holder not in (None, self.first_holder)
        return float(min(cube_height(sim), self.min_height) / self.min_height + handed)


@dataclass
class TransportTask:
    """One arm lifts the lid off the box and holds it aside while the other puts the cube in the box.
    Success: the cube rests inside the box."""

    name: str = "transport"

    def reset(self, sim: DualArmSim, seed: int) -> None:
        rng = np.random.default_rng(seed)
        sim.reset()  # the lid back on the box
        x, y, yaw = rng.uniform(-0.08, 0.08), rng.uniform(0.42, 0.5), rng.uniform(-0.3, 0.3)
        sim.set_object_pose("cube", np.array([x, y, TABLE_TOP_Z + CUBE_HALF]), yaw)

    def observe(self, sim: DualArmSim) -> None:
        """Success depends on the final state only."""

    def cube_in_box(self, sim: DualArmSim) -> bool:
        cube = sim.object_position("cube")
        inside = np.abs(cube[:2] - np.asarray(BOX_POS)) < BOX_INNER
        return bool(inside.all() and cube[2] < BOX_HEIGHT)

    def success(self, sim: DualArmSim) -> bool:
        return self.cube_in_box(sim)

    def reward(self, sim: DualArmSim) -> float:
        """Dense: lid off (0 .. 1) plus the cube's approach to the box centre (0 .. 1)."""
        lid_up = min(max(sim.object_position("lid")[2] - BOX_HEIGHT, 0.0), 0.1) / 0.1
        to_box = np.linalg.norm(sim.object_position("cube")[:2] - np.asarray(BOX_POS))
        return float(lid_up + 1 - np.tanh(5 * to_box) if not self.cube_in_box(sim) else 2.0)


TASKS = {"lift": LiftTask, "handover": HandoverTask, "transport": TransportTask}


def make_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]()
