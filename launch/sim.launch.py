"""ros2 launch dbp_control sim.launch.py: the simulated dual-arm robot driven by the default policy.

The nodes and their parameter files are mode 'sim' of config/graph.yaml, which `dbp launch sim` reads too."""

from dbp_control.nodes.ros_launch import launch_description


def generate_launch_description():  # noqa: ANN201
    return launch_description("sim")
