"""The Zenoh backend against an independent rmw_zenoh implementation, zenoh-ros2-sdk: the same key
expressions (with Jazzy's RIHS01 type hashes) and the same CDR, in both directions. The SDK looks for
message definitions as .msg files and otherwise clones them from GitHub, which cannot work offline: here
it reads .msg files written from the rosbags typestore, so nothing is downloaded."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import joint_state_msg, typestore
from dbp_control.middleware.zenoh_backend import ZenohNode, open_router, topic_key
from dbp_control.nodes.processes import free_endpoint

sdk = pytest.importorskip("zenoh_ros2_sdk")

DEFINITION_SEPARATOR = "\n" + "=" * 80 + "\n"  # between a type and its dependencies in a rosbags msgdef


def write_msg_files(distro: str, out: Path) -> None:
    """One .msg file per type of the typestore, as the SDK expects them (package/msg/Type.msg)."""
    store = typestore(distro)
    for name in store.fielddefs:
        package, kind, type_name = name.split("/")
        (out / package / kind).mkdir(parents=True, exist_ok=True)
        text = store.generate_msgdef(name, ros_version=2)[0].split(DEFINITION_SEPARATOR)[0]
        (out / package / kind / f"{type_name}.msg").write_text(text)


def test_joint_states_cross_between_the_backend_and_zenoh_ros2_sdk_both_ways(tmp_path):
    """Jazzy: the SDK computes the RIHS01 type hash itself. (For Humble, whose rmw_zenoh writes
    `TypeHashNotSupported`, the SDK must be given that hash by hand: it only computes RIHS01 ones.)"""
    write_msg_files("jazzy", tmp_path / "msgs")
    sdk.get_registry(str(tmp_path / "msgs"))  # before anything else asks the SDK for a type
    endpoint = free_endpoint()
    port = int(endpoint.rsplit(":", 1)[1])
    router = open_router(endpoint)
    node = ZenohNode("interop", endpoint=endpoint, distro="jazzy")
    ours_got, sdk_got = [], []
    try:
        sdk_publisher = sdk.ROS2Publisher(topic="/joint_states", msg_type="sensor_msgs/msg/JointState",
                                          router_port=port)
        sdk.ROS2Subscriber(topic="/joint_states", msg_type="sensor_msgs/msg/JointState", router_port=port,
                           callback=lambda m: sdk_got.append(float(m.position[0])))
        node.subscribe(CHANNELS["joint_states"], lambda m: ours_got.append(float(m.position[0])))
        publisher = node.publisher(CHANNELS["joint_states"])
        threading.Thread(target=node.spin, daemon=True).start()
        time.sleep(1.0)  # both sides discover each other through the router
        types = typestore("jazzy").types
        for k in range(3):
            sdk_publisher.publish(header=types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=k), frame_id=""),
                name=["left_shoulder_pan_joint"], position=np.array([float(k)]), velocity=np.zeros(1),
                effort=np.zeros(0))
            publisher.publish(joint_state_msg("jazzy", 10**9, ["left_shoulder_pan_joint"], np.array([10.0 + k])))
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not ({0.0, 1.0, 2.0} <= set(ours_got)
                                                   and {10.0, 11.0, 12.0} <= set(sdk_got)):
            time.sleep(0.05)
        assert {0.0, 1.0, 2.0} <= set(ours_got), ours_got  # the SDK's samples decoded by the backend
        assert {10.0, 11.0, 12.0} <= set(sdk_got), sdk_got  # and the backend's by the SDK
        assert sdk_publisher.keyexpr == topic_key("/joint_states", "sensor_msgs/msg/JointState", "jazzy")
    finally:
        node.shutdown()
        sdk.ZenohSession.get_instance().close()
        router.close()


def test_services_answer_zenoh_ros2_sdk_and_call_it_on_jazzy():
    """The SDK computes the service's RIHS01 hash itself from the definitions; both keys must agree."""
    from dbp_control.core.channels import Service
    from dbp_control.core.data.bags import SERVICE_DEFINITIONS

    request_text, response_text = SERVICE_DEFINITIONS["std_srvs/srv/SetBool"]
    endpoint = free_endpoint()
    port = int(endpoint.rsplit(":", 1)[1])
    router = open_router(endpoint)
    node = ZenohNode("interop_services", endpoint=endpoint, distro="jazzy")
    types = typestore("jazzy").types
    threading.Thread(target=node.spin, daemon=True).start()
    try:
        node.service(Service("/ours", "std_srvs/srv/SetBool"),
                     lambda req: types["std_srvs/srv/SetBool_Response"](success=not req.data, message="ours"))
        sdk.ROS2ServiceServer("/theirs", "std_srvs/srv/SetBool", request_definition=request_text,
                              response_definition=response_text, router_port=port,
                              callback=lambda req: types["std_srvs/srv/SetBool_Response"](success=req.data,
                                                                                          message="theirs"))
        sdk_client = sdk.ROS2ServiceClient("/ours", "std_srvs/srv/SetBool", request_definition=request_text,
                                           response_definition=response_text, router_port=port, timeout=5.0)
        time.sleep(1.0)
        answer = sdk_client.call(data=True)  # the SDK calls the backend's server
        assert (answer.success, answer.message) == (False, "ours")
        ours = node.client(Service("/theirs", "std_srvs/srv/SetBool"))
        answer = ours.call(types["std_srvs/srv/SetBool_Request"](data=True), timeout_s=5)  # and the backend the SDK's
        assert (answer.success, answer.message) == (True, "theirs")
        assert sdk_client.keyexpr == ours.key.replace("/theirs/", "/ours/")
    finally:
        node.shutdown()
        sdk.ZenohSession.get_instance().close()
        router.close()
