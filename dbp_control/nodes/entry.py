"""The console scripts ros2 launch starts (`sim_robot`, `policy`, `dual_arm_command`): the node is named
by the executable (or the launch file); `policy` hosts the `observation` and `policy` nodes. Under ROS 2
(`--ros-args` given, or rclpy importable) it runs on rclpy; otherwise on Zenoh, like `dbp node NAME`."""

from __future__ import annotations

import os
import sys
import threading


def main() -> None:
    from dbp_control.middleware.port import spin_together
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
    hosted = getattr(cls, "NODE_DEFAULTS", None)
    nodes = {n: RclpyBackendNode(n, args=sys.argv) for n in (hosted or [name])}
    try:
        cls(nodes[name]) if hosted is None else cls(nodes)
        spin_together(list(nodes.values()), threading.Event())
    except KeyboardInterrupt:
        pass
    finally:
        for node in reversed(list(nodes.values())):
            node.shutdown()
