"""What launch/<mode>.launch.py return: a LaunchDescription of the mode's nodes from config/graph.yaml.
Imported only by ros2 launch (it needs the ROS 2 `launch` packages)."""

from __future__ import annotations

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch_ros.actions import Node

from dbp_control.nodes import hosted_nodes
from dbp_control.nodes.graph import mode_nodes


def launch_description(mode: str) -> LaunchDescription:
    config = Path(get_package_share_directory("dbp_control")) / "config"
    # an executable hosting several nodes names them itself: a launch `name` would rename all of them
    return LaunchDescription([
        Node(package="dbp_control", executable=node.executable, name=node.name,
             parameters=[str(path) for path in node.parameter_files], output="screen")
        if hosted_nodes(node.executable) is None else
        Node(package="dbp_control", executable=node.executable,
             parameters=[str(path) for path in node.parameter_files], output="screen")
        for node in mode_nodes(mode, config)
    ])
