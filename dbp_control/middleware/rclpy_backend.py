"""The rclpy backend (the robot): the same port over a real ROS 2 node.

Messages stay `rosbags` objects on both sides of the port: publishers send their CDR bytes with
`Publisher.publish(bytes)` and subscriptions are raw (`raw=True`) and deserialised with the same
typestore, so the node code and the bytes on the wire are identical to the Zenoh backend's. The rclpy
message class is only needed for type support (`rosidl_runtime_py.utilities.get_message`).
Parameters are declared with their defaults and read back, so `--ros-args --params-file` works.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node as RclpyNode
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rosidl_runtime_py.utilities import get_message

from dbp_control.core.channels import Channel, Qos
from dbp_control.core.data.bags import typestore
from dbp_control.middleware.port import QOS_DEPTH, MessageCallback, Node, Publisher


def _qos(channel: Channel) -> QoSProfile:
    if channel.qos is Qos.SENSOR_DATA:
        return qos_profile_sensor_data
    return QoSProfile(depth=QOS_DEPTH[Qos.RELIABLE])  # reliable, volatile, keep last


class RclpyPublisher(Publisher):
    def __init__(self, node: RclpyBackendNode, channel: Channel) -> None:
        self._serialize = typestore(node.distro).serialize_cdr
        self._msg_type = channel.msg_type
        self._publisher = node.ros.create_publisher(get_message(channel.msg_type), channel.topic, _qos(channel))

    def publish(self, msg: Any) -> None:
        self._publisher.publish(self._serialize(msg, self._msg_type).tobytes())


class RclpyBackendNode(Node):
    def __init__(self, name: str, *, distro: str | None = None, args: list[str] | None = None) -> None:
        super().__init__(name, distro or os.environ.get("ROS_DISTRO", "humble"))
        if not rclpy.ok():
            rclpy.init(args=args)
        self.ros = RclpyNode(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.ros)
        self._deserialize = typestore(self.distro).deserialize_cdr

    def publisher(self, channel: Channel) -> Publisher:
        return RclpyPublisher(self, channel)

    def subscribe(self, channel: Channel, callback: MessageCallback) -> None:
        msg_type = channel.msg_type
        self.ros.create_subscription(get_message(msg_type), channel.topic,
                                     lambda raw: callback(self._deserialize(raw, msg_type)), _qos(channel), raw=True)

    def timer(self, period_s: float, callback: Callable[[], None]) -> None:
        self.ros.create_timer(period_s, callback)

    def parameters(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        return {name: self.ros.declare_parameter(name, value).value for name, value in defaults.items()}

    def now_ns(self) -> int:
        return self.ros.get_clock().now().nanoseconds

    def spin(self, until: Callable[[], bool] | None = None) -> None:
        while rclpy.ok() and not (until is not None and until()):
            self.executor.spin_once(timeout_sec=0.1)

    def shutdown(self) -> None:
        self._run_shutdown_callbacks()
        self.executor.remove_node(self.ros)
        self.ros.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
