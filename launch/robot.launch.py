"""ros2 launch dbp_control robot.launch.py: the real robot (UR drivers running) driven by the policy, three cameras.

The nodes and their parameter files are mode 'robot' of config/graph.yaml, which `dbp launch robot` reads too."""

from dbp_control.nodes.ros_launch import launch_description


def generate_launch_description():  # noqa: ANN201
    return launch_description("robot")
