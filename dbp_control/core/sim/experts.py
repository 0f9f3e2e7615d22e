"""Scripted experts: end-effector waypoints followed with differential IK, output as joint targets.

Each expert picks its strategy at random per episode, so the demonstrations are genuinely multimodal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dbp_control.core.layout import SIDES
from dbp_control.core.sim.ik import tool_down_rotation
from dbp_control.core.sim.robot import HOME_ARM, DualArmSim
from dbp_control.core.sim.scene import BOX_HEIGHT, BOX_POS
from dbp_control.core.sim.tasks import CUBE_HALF, HandoverTask, LiftTask, Task, TransportTask


@dataclass(frozen=True)
class Waypoint:
    position: np.ndarray  # tool centre point, world frame
    rotation: np.ndarray  # tool orientation, world frame [3, 3]
    gripper: float  # 0 open .. 1 closed
    duration: float  # seconds to get there from the previous waypoint


class WaypointFollower:
    """Interpolates waypoints in time and turns them into joint targets for one arm."""

    def __init__(self, sim: DualArmSim, side: str, waypoints: list[Waypoint]) -> None:
        self.waypoints = waypoints
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
        return self.ik.targets(position, goal.rotation), goal.gripper


def grasp_point(cube: np.ndarray) -> np.ndarray:
    """Where the tool centre point goes to close the fingers around the cube from above."""
    return cube + [0.0, 0.0, 0.005 - CUBE_HALF * 0.2]


class LiftExpert:
    """Left arm: above the cube, down, close, up. Strategy: grasp across the cube's x faces or its y
    faces (tool yaw differs by 90 degrees), a fair coin per episode."""

    strategies = ("grasp_x_faces", "grasp_y_faces")

    def __init__(self, sim: DualArmSim, task: LiftTask, rng: np.random.Generator) -> None:
        self.strategy = str(rng.choice(self.strategies))
        cube = sim.object_position("cube")
        yaw = sim.object_yaw("cube") + (0.0 if self.strategy == "grasp_x_faces" else np.pi / 2)
        yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2  # the gripper is symmetric: keep the wrist turn small
        grasp = grasp_point(cube)
        down = tool_down_rotation(yaw)
        self.follower = WaypointFollower(sim, "left", [
            Waypoint(cube + [0, 0, 0.12], down, 0.0, 1.2),
            Waypoint(grasp, down, 0.0, 0.8),
            Waypoint(grasp, down, 1.0, 0.5),
            Waypoint(grasp + [0, 0, task.lift_height + 0.07], down, 1.0, 1.0),
            Waypoint(grasp + [0, 0, task.lift_height + 0.07], down, 1.0, 0.4),
        ])

    @property
    def duration(self) -> float:
        return self.follower.duration

    def targets(self, t: float) -> np.ndarray:
        arm, gripper = self.follower.arm_targets(t)
        return np.concatenate([arm, [gripper], HOME_ARM, [0.0]])


def tool_sideways_rotation(toward: float) -> np.ndarray:
    """Tool z axis horizontal along world x (toward = +1 or -1), fingers closing vertically."""
    z = np.array([toward, 0.0, 0.0])
    x = np.array([0.0, 0.0, 1.0])
    return np.stack([x, np.cross(z, x), z], axis=1)


class BimanualExpert:
    """Both arms follow their own waypoints on one time line; subclasses set `followers` and `strategy`."""

    followers: dict[str, WaypointFollower]
    strategy: str

    @property
    def duration(self) -> float:
        return max(f.duration for f in self.followers.values())

    def targets(self, t: float) -> np.ndarray:
        parts = []
        for side in SIDES:
            arm, gripper = self.followers[side].arm_targets(t)
            parts += [arm, [gripper]]
        return np.concatenate(parts)


class HandoverExpert(BimanualExpert):
    """The giver (left or right, a fair coin) grasps the cube's y faces from above and brings it to the
    middle at a low or high handover height (a fair coin); the receiver comes in sideways from its own
    side, closes on the top and bottom faces, the giver lets go and rises, the receiver carries it off."""

    HEIGHTS = {"low": 0.22, "high": 0.32}

    def __init__(self, sim: DualArmSim, task: HandoverTask, rng: np.random.Generator) -> None:
        giver = str(rng.choice(["left", "right"]))
        receiver = "right" if giver == "left" else "left"
        level = str(rng.choice(list(self.HEIGHTS)))
        self.strategy = f"{giver}_gives_{level}"
        cube = sim.object_position("cube")
        down = tool_down_rotation(sim.object_yaw("cube") + np.pi / 2)  # fingers on the y faces
        grasp = grasp_point(cube)
        meet = np.array([0.0, 0.5, self.HEIGHTS[level]])
        out = 1.0 if receiver == "right" else -1.0  # the receiver's side of the table
        side = tool_sideways_rotation(-out)
        wait = sim.site_position(f"{receiver}_tcp") + [0.0, 0.0, 0.1]
        up = tool_down_rotation(0.0)
        reach = meet + [out * 0.005, 0.0, 0.0]
        # one time line for both arms: pick (2.5 s), meet (3 s), close (0.5 s), release, retreat, carry off
        self.followers = {
            giver: WaypointFollower(sim, giver, [
                Waypoint(cube + [0, 0, 0.12], down, 0.0, 1.2), Waypoint(grasp, down, 0.0, 0.8),
                Waypoint(grasp, down, 1.0, 0.5), Waypoint(meet, down, 1.0, 1.5), Waypoint(meet, down, 1.0, 1.5),
                Waypoint(meet, down, 1.0, 0.5), Waypoint(meet, down, 0.0, 0.4),
                Waypoint(meet + [0, 0, 0.12], down, 0.0, 0.8), Waypoint(meet + [0, 0, 0.12], down, 0.0, 0.8),
            ]),
            receiver: WaypointFollower(sim, receiver, [
                Waypoint(wait, up, 0.0, 1.2), Waypoint(wait, up, 0.0, 0.8), Waypoint(wait, up, 0.0, 0.5),
                Waypoint(meet + [out * 0.15, 0, 0], side, 0.0, 1.5), Waypoint(reach, side, 0.0, 1.5),
                Waypoint(reach, side, 1.0, 0.5), Waypoint(reach, side, 1.0, 0.4),
                Waypoint(reach, side, 1.0, 0.8), Waypoint(meet + [out * 0.2, 0, 0], side, 1.0, 0.8),
            ]),
        }



class TransportExpert(BimanualExpert):
    """One arm (a fair coin) lifts the lid by its knob and holds it aside on its own side; meanwhile the
    other picks the cube, waits for the lid to clear, and drops the cube into the box."""

    def __init__(self, sim: DualArmSim, task: TransportTask, rng: np.random.Generator) -> None:
        lid_arm = str(rng.choice(["left", "right"]))
        placer = "right" if lid_arm == "left" else "left"
        self.strategy = f"{lid_arm}_lifts_lid"
        knob = sim.data.geom("knob").xpos.copy()
        aside = np.array([0.25 if lid_arm == "right" else -0.25, BOX_POS[1], 0.25])
        cube = sim.object_position("cube")
        cube_down = tool_down_rotation(sim.object_yaw("cube"))
        down = tool_down_rotation(0.0)
        grasp = grasp_point(cube)
        drop = np.array([BOX_POS[0], BOX_POS[1], BOX_HEIGHT + 0.1])
        self.followers = {
            lid_arm: WaypointFollower(sim, lid_arm, [
                Waypoint(knob + [0, 0, 0.1], down, 0.0, 1.2), Waypoint(knob, down, 0.0, 0.8),
                Waypoint(knob, down, 1.0, 0.5), Waypoint(knob + [0, 0, 0.14], down, 1.0, 0.8),
                Waypoint(aside, down, 1.0, 1.0), Waypoint(aside, down, 1.0, 2.2),
            ]),
            placer: WaypointFollower(sim, placer, [
                Waypoint(cube + [0, 0, 0.12], cube_down, 0.0, 1.2), Waypoint(grasp, cube_down, 0.0, 0.8),
                Waypoint(grasp, cube_down, 1.0, 0.5), Waypoint(grasp + [0, 0, 0.18], cube_down, 1.0, 0.8),
                Waypoint(grasp + [0, 0, 0.18], cube_down, 1.0, 1.0), Waypoint(drop, cube_down, 1.0, 1.0),
                Waypoint(drop, cube_down, 0.0, 0.5), Waypoint(drop + [0, 0, 0.1], cube_down, 0.0, 0.7),
            ]),
        }


EXPERTS = {"lift": LiftExpert, "handover": HandoverExpert, "transport": TransportExpert}


def make_expert(sim: DualArmSim, task: Task, rng: np.random.Generator) -> LiftExpert | BimanualExpert:
    """The scripted expert of `task`, with its strategy drawn from `rng`."""
    if task.name not in EXPERTS:
        raise ValueError(f"no scripted expert for task {task.name!r}; experts: {sorted(EXPERTS)}")
    return EXPERTS[task.name](sim, task, rng)


def run_episode(sim: DualArmSim, task: Task, seed: int, *, control_hz: float = 50.0) -> tuple[bool, str]:
    """Reset `task` with `seed`, run its expert to the end; (success, strategy)."""
    task.reset(sim, seed)
    expert = make_expert(sim, task, np.random.default_rng(seed + 1_000_003))
    dt = 1.0 / control_hz
    for k in range(int(np.ceil(expert.duration / dt))):
        sim.set_targets(expert.targets(k * dt))
        sim.step(dt)
        task.observe(sim)
    return task.success(sim), expert.strategy
