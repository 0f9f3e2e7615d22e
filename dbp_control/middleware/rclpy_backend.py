"""The rclpy backend (the robot): the same port over a real ROS 2 node.

Messages stay `rosbags` objects on both sides of the port: publishers send their CDR bytes with
`Publisher.publish(bytes)` and subscriptions are raw (`raw=True`) and deserialised with the same
typestore, so the node code and the bytes on the wire are identical to the Zenoh backend's. The rclpy
message class is only needed for type support (`rosidl_runtime_py.utilities.get_message`).
rclpy has no raw services: requests and responses cross the port as CDR too (rclpy.serialization).
Parameters are declared with their defaults and read back, so `--ros-args --params-file` works.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node as RclpyNode
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.serialization import deserialize_message, serialize_message
from rosidl_runtime_py.utilities import get_message, get_service

from dbp_control.core.channels import Channel, Qos, Service
from dbp_control.core.data.bags import typestore
from dbp_control.middleware.port import (
    QOS_DEPTH,
    MessageCallback,
    Node,
    PortError,
    Publisher,
    ServiceClient,
    ServiceHandler,
)


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


class RclpyServiceClient(ServiceClient):
    def __init__(self, node: RclpyBackendNode, service: Service) -> None:
        self.service, self._node = service, node
        self._class = get_service(service.srv_type)
        self._client = node.ros.create_client(self._class, service.name)

    def call(self, request: Any, timeout_s: float = 5.0) -> Any:
        """The node must be spinning (in another thread) for the response to arrive."""
        srv_type = self.service.srv_type
        if not self._client.wait_for_service(timeout_sec=timeout_s):
            raise PortError(f"service {self.service.name} ({srv_type}): no server within {timeout_s:g} s")
        raw = self._node.serialize(request, f"{srv_type}_Request")
        future = self._client.call_async(deserialize_message(raw, self._class.Request))
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout_s):
            raise PortError(f"service {self.service.name} ({srv_type}): no response within {timeout_s:g} s")
        return self._node.deserialize(serialize_message(future.result()), f"{srv_type}_Response")


class RclpyBackendNode(Node):
    _alive = 0  # nodes of this process not yet shut down: the last one shuts rclpy down

    def __init__(self, name: str, *, distro: str | None = None, args: list[str] | None = None) -> None:
        super().__init__(name, distro or os.environ.get("ROS_DISTRO", "humble"))
        if not rclpy.ok():
            rclpy.init(args=args)
        self.ros = RclpyNode(name)
        RclpyBackendNode._alive += 1
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.ros)
        self._deserialize = typestore(self.distro).deserialize_cdr

    def serialize(self, msg: Any, msg_type: str) -> bytes:
        return typestore(self.distro).serialize_cdr(msg, msg_type).tobytes()

    def deserialize(self, raw: bytes, msg_type: str) -> Any:
        return self._deserialize(raw, msg_type)

    def publisher(self, channel: Channel) -> Publisher:
        return RclpyPublisher(self, channel)

    def subscribe(self, channel: Channel, callback: MessageCallback) -> None:
        msg_type = channel.msg_type
        self.ros.create_subscription(get_message(msg_type), channel.topic,
                                     lambda raw: callback(self._deserialize(raw, msg_type)), _qos(channel), raw=True)

    def service(self, service: Service, handler: ServiceHandler) -> None:
        srv_class = get_service(service.srv_type)

        def callback(request: Any, _response: Any) -> Any:
            ours = self.deserialize(serialize_message(request), f"{service.srv_type}_Request")
            raw = self.serialize(handler(ours), f"{service.srv_type}_Response")
            return deserialize_message(raw, srv_class.Response)

        self.ros.create_service(srv_class, service.name, callback)

    def client(self, service: Service) -> ServiceClient:
        return RclpyServiceClient(self, service)

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
        RclpyBackendNode._alive -= 1
        if RclpyBackendNode._alive == 0 and rclpy.ok():
            rclpy.shutdown()
