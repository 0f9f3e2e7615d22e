"""ros2 launch dbp_control record.launch.py: teleoperated demonstrations recorded from the real robot's topics.

The nodes and their parameter files are mode 'record' of config/graph.yaml, which `dbp launch record` reads too."""

from dbp_control.nodes.ros_launch import launch_description


def generate_launch_description():  # noqa: ANN201
    return launch_description("record")
