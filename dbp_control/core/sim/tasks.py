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


def place_cube(sim: DualArmSim, rng: np.random.Generator, x: tuple[float, float], y: tuple[float, float],
               yaw: tuple[float, float]) -> None:
    """Put the cube on the table at a position and yaw drawn uniformly from the given ranges."""
    cx, cy, cyaw = rng.uniform(*x), rng.uniform(*y), rng.uniform(*yaw)
    sim.set_object_pose("cube", np.array([cx, cy, TABLE_TOP_Z + CUBE_HALF]), cyaw)


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
        sim.reset()
        place_cube(sim, np.random.default_rng(seed), (-0.45, -0.25), (0.45, 0.6), (-np.pi / 4, np.pi / 4))

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
        sim.reset()
        place_cube(sim, np.random.default_rng(seed), (-0.08, 0.08), (0.45, 0.55), (-0.3, 0.3))
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
        sim.reset()  # the lid back on the box
        place_cube(sim, np.random.default_rng(seed), (-0.08, 0.08), (0.42, 0.5), (-0.3, 0.3))

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
        return 2.0 if self.cube_in_box(sim) else float(lid_up + 1 - np.tanh(5 * to_box))


TASKS = {"lift": LiftTask, "handover": HandoverTask, "transport": TransportTask}


def make_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]()
