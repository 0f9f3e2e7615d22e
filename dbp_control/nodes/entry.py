"""The console scripts ros2 launch starts (`sim_robot`, `policy`, `dual_arm_command`): the node is named
by the executable. Under ROS 2 (`--ros-args` given, or rclpy importable) it runs on rclpy; otherwise on
Zenoh, like `dbp node NAME`."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from dbp_control.nodes import node_class

    name = os.path.basename(sys.argv[0])
    cls = node_class(name)
    try:
        from dbp_control.middleware.rclpy_backend import RclpyBackendNode
    except ImportError:
        if "--ros-args" in sys.argv:
            raise SystemExit(f"{name}: started with --ros-args but rclpy is not importable; "
                             "source your ROS 2 setup") from None
        from dbp_control.cli.main import main as dbp_main

        raise SystemExit(dbp_main(["node", name, *sys.argv[1:]])) from None
    node = RclpyBackendNode(name, args=sys.argv)
    try:
        cls(node)
        node.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.shutdown()
