"""The robot's layout: two UR arms (left, right) with a gripper each, and three cameras. The channel
table, the simulation, the dataset and the policies all take joint and camera names from here."""

from __future__ import annotations

ARM_JOINTS: tuple[str, ...] = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)
SIDES: tuple[str, ...] = ("left", "right")
CAMERAS: tuple[str, ...] = ("left_wrist", "right_wrist", "head")


def joint_names(side: str) -> list[str]:
    """The 6 arm joints and the gripper of one arm, in command and joint-state order."""
    if side not in SIDES:
        raise ValueError(f"unknown arm {side!r}; arms: {list(SIDES)}")
    return [f"{side}_{j}" for j in ARM_JOINTS] + [f"{side}_gripper_joint"]


# every joint of the robot, left arm then right, in the order commands, joint states and policies use
ROBOT_JOINTS: tuple[str, ...] = tuple(name for side in SIDES for name in joint_names(side))
