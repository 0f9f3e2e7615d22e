"""The middleware port and its backends (Zenoh here and anywhere; rclpy on a ROS 2 robot)."""

from dbp_control.middleware.port import Node, PortError, Publisher, load_parameters, resolve_parameters

__all__ = ["Node", "PortError", "Publisher", "load_parameters", "resolve_parameters"]
