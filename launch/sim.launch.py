"""ros2 launch dbp_control sim.launch.py: the simulated dual-arm robot driven by the default policy.

The nodes and parameter files come from config/graph.yaml (mode `sim`), the description `dbp launch sim`
reads too, so the two launchers cannot drift apart."""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch_ros.actions import Node

from dbp_control.nodes.graph import mode_nodes


def generate_launch_description() -> LaunchDescription:
    config = Path(get_package_share_directory("dbp_control")) / "config"
    return LaunchDescription([
        Node(package="dbp_control", executable=node.executable, name=node.name,
             parameters=[str(path) for path in node.parameter_files], output="screen")
        for node in mode_nodes("sim", config)
    ])
