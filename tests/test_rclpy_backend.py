"""The rclpy backend, where ROS 2 is installed (skipped here: rclpy is not on PyPI). The same behaviour
is tested over Zenoh in test_sim_robot_node.py and test_zenoh_services.py, which never skip."""

import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")

from dbp_control.core.channels import CHANNELS  # noqa: E402
from dbp_control.core.channels import Service  # noqa: E402
from dbp_control.core.data.bags import float64_array_msg, typestore  # noqa: E402
from dbp_control.middleware.rclpy_backend import RclpyBackendNode  # noqa: E402


def test_a_command_round_trips_as_ros_2_cdr():
    node = RclpyBackendNode("dbp_test_rclpy")
    got = []
    node.subscribe(CHANNELS["left_arm_command"], got.append)
    publisher = node.publisher(CHANNELS["left_arm_command"])
    spinner = threading.Thread(target=node.spin, kwargs={"until": lambda: bool(got)}, daemon=True)
    spinner.start()
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        publisher.publish(float64_array_msg(node.distro, np.arange(7.0)))
        time.sleep(0.1)
    spinner.join(timeout=5)
    node.shutdown()
    np.testing.assert_array_equal(got[0].data, np.arange(7.0))


def test_a_service_call_round_trips_as_ros_2_cdr():
    node = RclpyBackendNode("dbp_test_rclpy_service")
    types = typestore(node.distro).types
    service = Service("/dbp_test/set", "std_srvs/srv/SetBool")
    node.service(service, lambda req: types["std_srvs/srv/SetBool_Response"](success=req.data, message="served"))
    client = node.client(service)
    done = threading.Event()
    spinner = threading.Thread(target=node.spin, kwargs={"until": done.is_set}, daemon=True)
    spinner.start()
    try:
        response = client.call(types["std_srvs/srv/SetBool_Request"](data=True), timeout_s=10)
    finally:
        done.set()
        spinner.join(timeout=5)
        node.shutdown()
    assert (response.success, response.message) == (True, "served")
