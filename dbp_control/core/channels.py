"""THE table of the robot's channels: topic, message type, QoS, nominal rate and frame id.

Every node, launch file, the recorder, the dataset compiler and the tests read this table; nothing else
spells a topic name. Per arm, a command is 7 values: six joint positions (rad) and a gripper closure
(0 open .. 1 closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from dbp_control.core.layout import CAMERAS, SIDES


class Qos(str, Enum):
    SENSOR_DATA = "sensor_data"  # best effort, keep last 5: fresh data beats complete data
    RELIABLE = "reliable"  # reliable, keep last 10: ros2_controllers subscribe reliably


@dataclass(frozen=True)
class Channel:
    topic: str
    msg_type: str
    qos: Qos
    rate_hz: float  # nominal; 0 for messages sent on events
    frame_id: str = ""
    sim_only: bool = False  # privileged simulator state: recorded in simulation, absent on the robot


def camera_frame(camera: str) -> str:
    return f"{camera}_camera_color_optical_frame"


CHANNELS: dict[str, Channel] = {
    "joint_states": Channel("/joint_states", "sensor_msgs/msg/JointState", Qos.SENSOR_DATA, 125.0),
    **{
        f"{side}_arm_command": Channel(
            f"/{side}_arm/forward_position_controller/commands", "std_msgs/msg/Float64MultiArray", Qos.RELIABLE, 50.0
        )
        for side in SIDES
    },
    **{  # the option for drivers running ros2_controllers' joint_trajectory_controller instead
        f"{side}_arm_trajectory": Channel(
            f"/{side}_arm/joint_trajectory_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory",
            Qos.RELIABLE, 50.0,
        )
        for side in SIDES
    },
    **{
        f"{cam}_image": Channel(f"/{cam}_camera/color/image_raw", "sensor_msgs/msg/Image", Qos.SENSOR_DATA, 30.0,
                                camera_frame(cam))
        for cam in CAMERAS
    },
    **{  # optional: depth aligned to the colour image (16UC1, millimetres)
        f"{cam}_depth": Channel(f"/{cam}_camera/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image",
                                Qos.SENSOR_DATA, 30.0, camera_frame(cam))
        for cam in CAMERAS
    },
    **{
        f"{cam}_camera_info": Channel(f"/{cam}_camera/color/camera_info", "sensor_msgs/msg/CameraInfo",
                                      Qos.SENSOR_DATA, 30.0, camera_frame(cam))
        for cam in CAMERAS
    },
    # one pose per movable object (dbp_control.core.sim.scene.MOVABLE_OBJECTS order), for state-based policies;
    # published with every joint state, under its stamp, so a state observation pairs the two exactly
    # (at 50 Hz on their own, poses up to 20 ms older than the joints made the default policy fumble grasps)
    "object_poses": Channel("/sim/object_poses", "geometry_msgs/msg/PoseArray", Qos.SENSOR_DATA, 125.0, "world",
                            sim_only=True),
    # the policy graph's own topics: chunks from inference to the command node (one point per chunk step,
    # stamped with the observation they answer), safety controls, and diagnostics as JSON
    "action_chunk": Channel("/dbp/action_chunk", "trajectory_msgs/msg/JointTrajectory", Qos.RELIABLE, 100.0),
    "emergency_stop": Channel("/dbp/emergency_stop", "std_msgs/msg/Bool", Qos.RELIABLE, 0.0),
    "enable": Channel("/dbp/enable", "std_msgs/msg/Bool", Qos.RELIABLE, 0.0),
    "command_status": Channel("/dbp/command_status", "std_msgs/msg/String", Qos.RELIABLE, 10.0),
    "policy_status": Channel("/dbp/policy_status", "std_msgs/msg/String", Qos.RELIABLE, 10.0),
    "observation_status": Channel("/dbp/observation_status", "std_msgs/msg/String", Qos.RELIABLE, 10.0),
    # recording: "start" (optionally followed by a JSON description), "stop", "discard", "success", "failure"
    "episode_control": Channel("/dbp/episode_control", "std_msgs/msg/String", Qos.RELIABLE, 0.0),
    "recorder_status": Channel("/dbp/recorder_status", "std_msgs/msg/String", Qos.RELIABLE, 2.0),
    # the simulated robot's episode control: a seed on sim_reset starts an episode; sim_status is JSON
    "sim_reset": Channel("/sim/reset", "std_msgs/msg/Int64", Qos.RELIABLE, 0.0, sim_only=True),
    "sim_status": Channel("/sim/status", "std_msgs/msg/String", Qos.RELIABLE, 10.0, sim_only=True),
}
ROBOT_CHANNELS: dict[str, Channel] = {name: c for name, c in CHANNELS.items() if not c.sim_only}
# how the command node talks to each arm's driver (its `command_type`) -> the channel name after "<side>_"
COMMAND_TYPES: dict[str, str] = {"position": "arm_command", "trajectory": "arm_trajectory"}


@dataclass(frozen=True)
class Service:
    name: str
    srv_type: str  # std_srvs types (dbp_control.core.data.bags.SERVICE_DEFINITIONS)


# the command node's safety controls as services too, beside their topics (a call returns once it took effect)
SERVICES: dict[str, Service] = {
    # SetBool: the same as a Bool on /dbp/enable, which the command node then publishes for the other nodes
    "set_enabled": Service("/dbp/set_enabled", "std_srvs/srv/SetBool"),
    # Trigger: the same as true on /dbp/emergency_stop (a latched hold until enabled again)
    "trigger_emergency_stop": Service("/dbp/trigger_emergency_stop", "std_srvs/srv/Trigger"),
}


def command_channel(side: str, command_type: str) -> Channel:
    """The channel carrying `side`'s arm commands for a command node with this `command_type`."""
    if command_type not in COMMAND_TYPES:
        raise ValueError(f"command_type must be one of {sorted(COMMAND_TYPES)}, got {command_type!r}")
    return channel(f"{side}_{COMMAND_TYPES[command_type]}")


def channel(name: str) -> Channel:
    if name not in CHANNELS:
        raise KeyError(f"unknown channel {name!r}; channels: {sorted(CHANNELS)}")
    return CHANNELS[name]
