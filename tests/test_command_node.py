"""The dual-arm command node as a process over Zenoh: its trajectory option drives the simulated robot
through joint_trajectory_controller's topic, and a wrong option stops it with the reason."""

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import joint_trajectory_msg, trajectory_positions, typestore
from dbp_control.core.layout import ROBOT_JOINTS, joint_names
from dbp_control.middleware.zenoh_backend import ZenohNode, open_router
from dbp_control.nodes.processes import NodeProcesses, free_endpoint


def test_trajectory_commands_drive_the_arms_and_nothing_goes_to_the_position_controllers():
    nodes = {"sim_robot": ["sim_robot", "--set", "cameras=false"],
             "command": ["dual_arm_command", "--set", "command_type=trajectory"]}
    with NodeProcesses(nodes) as graph:
        probe = ZenohNode("trajectory_probe", endpoint=graph.endpoint)
        seen: dict[str, list] = {"trajectory": [], "position": [], "joints": []}
        lock = threading.Lock()

        def keep(key):
            def callback(msg):
                with lock:
                    seen[key].append(msg)
            return callback

        probe.subscribe(CHANNELS["left_arm_trajectory"], keep("trajectory"))
        probe.subscribe(CHANNELS["left_arm_command"], keep("position"))
        probe.subscribe(CHANNELS["joint_states"], keep("joints"))
        threading.Thread(target=probe.spin, daemon=True).start()
        chunks = probe.publisher(CHANNELS["action_chunk"])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not seen["joints"]:
                graph.check_alive()
                time.sleep(0.1)
            with lock:
                start = np.asarray(seen["joints"][-1].position, dtype=np.float64)
            target = start.copy()
            target[:6] += [0.15, -0.1, 0.1, 0.0, 0.1, -0.15]  # the left arm moves, the right one holds
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:  # fresh chunks, as the policy sends them
                chunks.publish(joint_trajectory_msg("humble", time.time_ns(), "world", ROBOT_JOINTS,
                                                    np.repeat(target[None], 16, 0), 0.1))
                time.sleep(0.05)
                with lock:
                    reached = np.abs(np.asarray(seen["joints"][-1].position[:6]) - target[:6]).max() < 0.01
                if reached:
                    break
            graph.check_alive()
            with lock:
                trajectories, positions, joints = list(seen["trajectory"]), list(seen["position"]), seen["joints"][-1]
        finally:
            probe.shutdown()
    np.testing.assert_allclose(np.asarray(joints.position[:6]), target[:6], atol=0.01)
    assert len(trajectories) >= 5 and not positions
    last = trajectories[-1]
    assert list(last.joint_names) == joint_names("left") and len(last.points) == 1
    step = last.points[0].time_from_start
    assert (step.sec, step.nanosec) == (0, 20_000_000)  # due one command period (50 Hz) after arrival
    assert (last.header.stamp.sec, last.header.stamp.nanosec) == (0, 0)  # start on arrival


def test_an_unknown_command_type_stops_the_node_with_the_reason():
    endpoint = free_endpoint()
    router = open_router(endpoint)
    try:
        result = subprocess.run([sys.executable, "-m", "dbp_control.cli.main", "node", "dual_arm_command",
                                 "--endpoint", endpoint, "--set", "command_type=velocity"],
                                capture_output=True, text=True, timeout=60)
    finally:
        router.close()
    assert result.returncode != 0
    assert "command_type must be one of ['position', 'trajectory'], got 'velocity'" in result.stderr + result.stdout


def test_trajectory_messages_carry_the_chunk_timing():
    msg = joint_trajectory_msg("jazzy", 1_500_000_000, "world", ["a", "b"], np.array([[1.0, 2.0], [3.0, 4.0]]), 0.1,
                               first_s=0.05)
    assert [p.time_from_start.nanosec for p in msg.points] == [50_000_000, 150_000_000]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1, 500_000_000)
    raw = typestore("jazzy").serialize_cdr(msg, "trajectory_msgs/msg/JointTrajectory")
    back = typestore("jazzy").deserialize_cdr(raw, "trajectory_msgs/msg/JointTrajectory")
    np.testing.assert_array_equal(back.points[1].positions, [3.0, 4.0])
    with pytest.raises(ValueError, match=r"positions must be \[T, 1\] for joints \['a'\], got \(2, 3\)"):
        joint_trajectory_msg("humble", 0, "", ["a"], np.zeros((2, 3)), 0.1)


def test_trajectories_read_back_in_the_robots_joint_order_and_malformed_ones_are_named():
    msg = joint_trajectory_msg("humble", 0, "", ["b", "a"], np.array([[1.0, 2.0], [3.0, 4.0]]), 0.1)
    positions, step = trajectory_positions(msg, ["a", "b"])
    np.testing.assert_array_equal(positions, [[2.0, 1.0], [4.0, 3.0]])
    assert step == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"trajectory joints \['b', 'a'\] are not the robot's \['a', 'c'\]"):
        trajectory_positions(msg, ["a", "c"])
    msg.points[1].positions = np.array([5.0, 6.0, 7.0])
    with pytest.raises(ValueError, match="trajectory point 1 has 3 positions for 2 joints"):
        trajectory_positions(msg, ["a", "b"])
