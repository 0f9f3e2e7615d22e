"""The simulated robot as a separate process on the robot's topics over Zenoh (real ROS 2 CDR bytes)."""

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict

import numpy as np
import pytest

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import float64_array_msg, stamp_ns_of, typestore
from dbp_control.core.layout import CAMERAS
from dbp_control.middleware.port import Node, Publisher
from dbp_control.middleware.zenoh_backend import ZenohNode, open_router, topic_key
from dbp_control.nodes.sim_robot import SimRobot
from dbp_control.nodes.processes import free_endpoint
from process_helpers import stop_process



@pytest.fixture(scope="module")
def robot():
    """A router, the sim robot process, and a client node spinning in a thread of this process."""
    endpoint = free_endpoint()
    router = open_router(endpoint)
    process = subprocess.Popen(
        [sys.executable, "-m", "dbp_control.cli.main", "sim", "robot", "--endpoint", endpoint,
         "--set", "image_height=48", "--set", "image_width=64", "--set", "seed=3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = ZenohNode("test_client", endpoint=endpoint)
    received = defaultdict(list)
    lock = threading.Lock()

    def keep(name):
        def on_message(msg):
            with lock:
                received[name].append((time.monotonic(), msg))
        return on_message

    for name in ("joint_states", "head_image", "head_camera_info", "left_wrist_image", "object_poses", "sim_status"):
        client.subscribe(CHANNELS[name], keep(name))
    spinner = threading.Thread(target=client.spin, daemon=True)
    spinner.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (received["joint_states"] and received["head_image"]):
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.1)
    assert received["joint_states"], "no joint states from the sim robot within 60 s"
    try:
        yield client, received, lock, process
    finally:
        try:
            output = stop_process(process)
        finally:
            client.shutdown()
            router.close()
    assert process.returncode == 0, output


def latest(received, lock, name):
    with lock:
        return received[name][-1][1]


def test_keys_follow_rmw_zenoh():
    assert topic_key("/joint_states", "sensor_msgs/msg/JointState", "jazzy") == (
        "0/joint_states/sensor_msgs::msg::dds_::JointState_/"
        "RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e")
    assert topic_key("/left_arm/forward_position_controller/commands", "std_msgs/msg/Float64MultiArray", "humble",
                     domain_id=7) == ("7/left_arm/forward_position_controller/commands/"
                                      "std_msgs::msg::dds_::Float64MultiArray_/TypeHashNotSupported")


def test_publishes_the_robot_topics_at_their_rates(robot):
    client, received, lock, _ = robot
    with lock:
        for name in received:
            received[name].clear()
    time.sleep(2.0)
    with lock:
        counts = {name: len(v) for name, v in received.items()}
        joints = received["joint_states"][-1][1]
        image = received["head_image"][-1][1]
        info = received["head_camera_info"][-1][1]
    assert counts["joint_states"] >= 0.8 * 125 * 2, counts
    assert counts["head_image"] >= 0.8 * 30 * 2 and counts["left_wrist_image"] >= 0.8 * 30 * 2, counts
    assert counts["object_poses"] >= 0.8 * 50 * 2, counts
    assert joints.name[0] == "left_shoulder_pan_joint" and len(joints.position) == 14
    assert abs(stamp_ns_of(joints) - time.time_ns()) < 1e9  # stamped with the wall clock
    assert (image.height, image.width, image.encoding, image.header.frame_id) == (48, 64, "rgb8",
                                                                                "head_camera_color_optical_frame")
    assert info.width == 64 and info.k[0] == pytest.approx(615 * 64 / 640)
    status = json.loads(latest(received, lock, "sim_status").data)
    assert status["task"] == "lift" and status["seed"] == 3


def test_tracks_commanded_joint_targets_and_rejects_bad_commands(robot):
    client, received, lock, _ = robot
    publish = client.publisher(CHANNELS["left_arm_command"])
    start = np.asarray(latest(received, lock, "joint_states").position[:7])
    target = start + np.array([0.2, -0.1, 0.15, 0.0, 0.1, -0.2, 0.0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        publish.publish(float64_array_msg("humble", target))
        time.sleep(0.02)
        if np.abs(np.asarray(latest(received, lock, "joint_states").position[:7]) - target).max() < 0.01:
            break
    np.testing.assert_allclose(latest(received, lock, "joint_states").position[:6], target[:6], atol=0.01)
    before = json.loads(latest(received, lock, "sim_status").data)["rejected_commands"]
    publish.publish(float64_array_msg("humble", np.full(7, np.nan)))
    publish.publish(float64_array_msg("humble", np.zeros(5)))
    time.sleep(0.5)
    assert json.loads(latest(received, lock, "sim_status").data)["rejected_commands"] == before + 2
    np.testing.assert_allclose(latest(received, lock, "joint_states").position[:6], target[:6], atol=0.01)


def test_a_reset_starts_a_new_episode_with_the_given_seed(robot):
    client, received, lock, _ = robot
    objects_before = np.array([[p.position.x, p.position.y] for p in latest(received, lock, "object_poses").poses])
    reset = client.publisher(CHANNELS["sim_reset"])
    reset.publish(typestore("humble").types["std_msgs/msg/Int64"](data=11))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and json.loads(latest(received, lock, "sim_status").data)["seed"] != 11:
        time.sleep(0.05)
    assert json.loads(latest(received, lock, "sim_status").data)["seed"] == 11
    time.sleep(0.1)
    objects_after = np.array([[p.position.x, p.position.y] for p in latest(received, lock, "object_poses").poses])
    assert not np.allclose(objects_before[0], objects_after[0])  # the cube was placed by the new seed


def test_a_node_waits_for_a_late_router_and_names_a_missing_one():
    import threading as th

    endpoint = free_endpoint()
    routers = []
    late = th.Timer(1.0, lambda: routers.append(open_router(endpoint)))
    late.start()
    started = time.monotonic()
    node = ZenohNode("late", endpoint=endpoint, connect_timeout_s=10)  # the router comes a second later
    assert time.monotonic() - started >= 0.9
    node.shutdown()
    late.join()
    routers[0].close()
    from dbp_control.middleware.port import PortError

    with pytest.raises(PortError, match="no Zenoh router reachable at .* within 1 s"):
        ZenohNode("alone", endpoint=free_endpoint(), connect_timeout_s=1)


def test_a_process_that_leaves_its_sessions_open_still_exits():
    """zenoh's callback threads end only when their session closes; the backend closes forgotten ones."""
    script = ("from dbp_control.core.channels import CHANNELS\n"
              "from dbp_control.middleware.zenoh_backend import ZenohNode, open_router\n"
              "from dbp_control.nodes.processes import free_endpoint\n"
              "endpoint = free_endpoint()\n"
              "router = open_router(endpoint)\n"
              "node = ZenohNode('forgetful', endpoint=endpoint)\n"
              "node.subscribe(CHANNELS['joint_states'], lambda msg: None)\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = process.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the process did not exit within 30 s of its last line: {process.communicate()[0]}")
    assert process.returncode == 0, output


class ClockNode(Node):
    """The port with nothing behind it and a clock the test moves: SimRobot's logic without processes."""

    def __init__(self):
        super().__init__("sim_robot", "humble")
        self.clock_ns = 0

    def publisher(self, channel):
        return type("Drop", (Publisher,), {"publish": lambda self, msg: None})()

    def subscribe(self, channel, callback): ...

    def service(self, service, handler): ...

    def client(self, service): ...

    def timer(self, period_s, callback): ...

    def parameters(self, defaults):
        return {**defaults, "cameras": False, "realtime_priority": 0}

    def now_ns(self):
        return self.clock_ns

    def spin(self, until=None): ...

    def shutdown(self): ...


def test_the_status_keeps_a_success_once_reached():
    """A success that holds for less than one status period (10 Hz) is still the episode's outcome, as
    closed-loop evaluation counts it; the status says when it came."""
    node = ClockNode()
    robot = SimRobot(node)
    done = iter([False, True, False, False])
    robot.task.success = lambda sim: next(done)
    for step in range(1, 5):
        node.clock_ns = step * 20_000_000
        robot.advance()
    status = robot.status()
    assert status["success"] is True and status["success_time"] == pytest.approx(0.04, abs=0.003)
    assert status["time"] == pytest.approx(0.08, abs=0.003)
    robot.reset(5)
    assert robot.status()["success"] is False and robot.status()["success_time"] is None


class CameraClockNode(ClockNode):
    """ClockNode with small cameras, keeping what is published and from which thread."""

    def __init__(self):
        super().__init__()
        self.published = []  # (topic, thread name, message)
        self.shutdown_callbacks = []

    def publisher(self, channel):
        published = self.published
        return type("Keep", (Publisher,), {"publish": lambda self, msg: published.append(
            (channel.topic, threading.current_thread().name, msg))})()

    def parameters(self, defaults):
        return {**defaults, "image_height": 24, "image_width": 32, "realtime_priority": 0}

    def on_shutdown(self, callback):
        self.shutdown_callbacks.append(callback)


def test_cameras_render_off_the_executor_from_the_state_at_their_stamp(monkeypatch):
    """The executor only copies the state; the worker draws it and publishes under the stamp of that state.
    A camera whose previous state the worker has not taken yet is replaced, and counted."""
    from dbp_control.nodes import sim_robot

    rendering, release = threading.Event(), threading.Event()
    drawn = []
    original = sim_robot.CameraView.render

    def render(view, camera, qpos):
        drawn.append((camera, threading.current_thread().name))
        rendering.set()
        assert release.wait(10)
        return original(view, camera, qpos)

    monkeypatch.setattr(sim_robot.CameraView, "render", render)
    node = CameraClockNode()
    robot = SimRobot(node)
    try:
        for tick in range(1, 8):  # the cameras in turn: 1, 2, 3, 1, 2, 3, 1
            node.clock_ns = tick * 11_000_000
            robot.queue_next_camera()
            if tick == 1:
                assert rendering.wait(10)  # the worker holds the first camera's state; the executor goes on
        assert robot.status()["dropped_frames"] == 3
        release.set()
        deadline = time.monotonic() + 10
        while len([p for p in node.published if p[0].endswith("image_raw")]) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        release.set()
        for callback in node.shutdown_callbacks:
            callback()
    images = [(topic, thread, stamp_ns_of(msg)) for topic, thread, msg in node.published if topic.endswith("image_raw")]
    assert {thread for _, thread, _ in images} == {"camera-renderer"}
    assert {thread for _, thread in drawn} == {"camera-renderer"}
    # the first camera's first state, then each camera's newest: ticks 7, 5 and 6
    first, second, third = (f"/{cam}_camera/color/image_raw" for cam in CAMERAS)
    assert images[0][::2] == (first, 11_000_000)
    assert sorted(stamp for _, _, stamp in images) == [11_000_000, 55_000_000, 66_000_000, 77_000_000]
    assert {(topic, stamp) for topic, _, stamp in images[1:]} == {
        (first, 77_000_000), (second, 55_000_000), (third, 66_000_000)}
    infos = [(topic, stamp_ns_of(msg)) for topic, _, msg in node.published if topic.endswith("camera_info")]
    assert infos == [(topic.replace("image_raw", "camera_info"), stamp) for topic, _, stamp in images]
    assert not robot.camera_worker.thread.is_alive()
