"""Scripted experts: end-effector waypoints followed with differential IK, output as joint targets.

Each expert picks its strategy at random per episode, so the demonstrations are genuinely multimodal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dbp_control.core.sim.ik import tool_down_rotation
from dbp_control.core.sim.robot import HOME_ARM, DualArmSim
from dbp_control.core.sim.tasks import CUBE_HALF, LiftTask


@dataclass(frozen=True)
class Waypoint:
    position: np.ndarray  # tool centre point, world frame
    yaw: float  # tool x axis in the table plane
    gripper: float  # 0 open .. 1 closed
    duration: float  # seconds to get there from the previous waypoint


class WaypointFollower:
    """Interpolates waypoints in time and turns them into joint targets for one arm."""

    def __init__(self, sim: DualArmSim, side: str, waypoints: list[Waypoint]) -> None:
        self.sim, self.side, self.waypoints = sim, side, waypoints
        self.ik = sim.arm_ik(side)
        self._start = sim.site_position(f"{side}_tcp")
        self._ends = np.cumsum([w.duration for w in waypoints])

    @property
    def duration(self) -> float:
        return float(self._ends[-1])

    def arm_targets(self, t: float) -> tuple[np.ndarray, float]:
        """Six joint targets and the gripper command at time t since the start."""
        k = int(min(np.searchsorted(self._ends, t, side="right"), len(self.waypoints) - 1))
        begin = self._start if k == 0 else self.waypoints[k - 1].position
        seg_start = 0.0 if k == 0 else self._ends[k - 1]
        alpha = np.clip((t - seg_start) / self.waypoints[k].duration, 0.0, 1.0)
        goal = self.waypoints[k]
        position = begin + alpha * (goal.position - begin)
        return self.ik.targets(position, tool_down_rotation(goal.yaw)), goal.gripper


class LiftExpert:
    """Left arm: above the cube, down, close, up. Strategy: grasp across the cube's x faces or its y
    faces (tool yaw differs by 90 degrees), a fair coin per episode."""

    strategies = ("grasp_x_faces", "grasp_y_faces")

    def __init__(self, sim: DualArmSim, task: LiftTask, rng: np.random.Generator) -> None:
        self.strategy = str(rng.choice(self.strategies))
        cube = sim.object_position("cube")
        quat = sim.data.body("cube").xquat
        cube_yaw = 2 * np.arctan2(quat[3], quat[0])
        yaw = cube_yaw + (0.0 if self.strategy == "grasp_x_faces" else np.pi / 2)
        yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2  # the gripper is symmetric: keep the wrist turn small
        grasp = cube + [0.0, 0.0, 0.005 - CUBE_HALF * 0.2]
        self.follower = WaypointFollower(sim, "left", [
            Waypoint(cube + [0, 0, 0.12], yaw, 0.0, 1.2),
            Waypoint(grasp, yaw, 0.0, 0.8),
            Waypoint(grasp, yaw, 1.0, 0.5),
            Waypoint(grasp + [0, 0, task.lift_height + 0.07], yaw, 1.0, 1.0),
            Waypoint(grasp + [0, 0, task.lift_height + 0.07], yaw, 1.0, 0.4),
        ])
        self.sim = sim

    @property
    def duration(self) -> float:
        return self.follower.duration

    def targets(self, t: float) -> np.ndarray:
        arm, gripper = self.follower.arm_targets(t)
        return np.concatenate([arm, [gripper], HOME_ARM, [0.0]])


def run_episode(sim: DualArmSim, task: LiftTask, seed: int, *, control_hz: float = 50.0) -> tuple[bool, str]:
    """Reset `task` with `seed`, run its expert to the end; (success, strategy)."""
    task.reset(sim, seed)
    expert = LiftExpert(sim, task, np.random.default_rng(seed + 1_000_003))
    dt = 1.0 / control_hz
    for k in range(int(np.ceil(expert.duration / dt))):
        sim.set_targets(expert.targets(k * dt))
        sim.step(dt)
    return task.success(sim), expert.strategy
