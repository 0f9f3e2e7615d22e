"""Episode recording: the core recorder, and the recorder node as a process over Zenoh (SIGKILL included)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import (
    BagError,
    float64_array_msg,
    joint_trajectory_msg,
    read_bag,
    read_episode_info,
    typestore,
)
from dbp_control.core.data.recorder import EpisodeRecorder, RecorderError
from dbp_control.core.data.recover import recover_bag
from dbp_control.core.layout import joint_names
from dbp_control.middleware.zenoh_backend import ZenohNode, open_router
from dbp_control.nodes.processes import free_endpoint
from process_helpers import stop_processes, wait_for

TOPICS = {"/count": "std_msgs/msg/Float64MultiArray"}


def test_episodes_start_stop_discard_and_carry_their_outcome(tmp_path):
    recorder = EpisodeRecorder(tmp_path, TOPICS)
    assert not recorder.write("/count", 0, float64_array_msg("humble", np.zeros(1)))  # idle: nothing recorded
    with pytest.raises(RecorderError, match="no episode"):
        recorder.stop()
    first = recorder.start({"task": "lift", "operator": "ada"})
    with pytest.raises(RecorderError, match="already recording"):
        recorder.start({"task": "lift"})
    for k in range(10):
        assert recorder.write("/count", k, float64_array_msg("humble", np.array([k], float)))
    recorder.mark_success(True)
    recorder.stop()
    recorder.flush()
    assert (recorder.stats.saved, recorder.stats.last_saved) == (1, first) and (tmp_path / first).is_dir()
    second = recorder.start({"task": "lift"})
    recorder.write("/count", 99, float64_array_msg("humble", np.zeros(1)))
    recorder.discard()
    recorder.flush()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [first]
    assert [m.msg.data[0] for m in read_bag(tmp_path / first, topics=["/count"])] == list(range(10))
    assert read_episode_info(tmp_path / first) == {"task": "lift", "operator": "ada", "success": True}
    assert not (tmp_path / ".recording" / second).exists() and recorder.stats.discarded == 1
    assert (recorder.stats.episodes, recorder.stats.saved, recorder.stats.last_saved) == (2, 1, first)


def test_a_slow_disk_drops_messages_instead_of_blocking(tmp_path, monkeypatch):
    from dbp_control.core.data.bags import EpisodeBagWriter

    real = EpisodeBagWriter.write
    monkeypatch.setattr(EpisodeBagWriter, "write", lambda self, *a: (time.sleep(0.05), real(self, *a)))
    recorder = EpisodeRecorder(tmp_path, TOPICS, queue_size=5)
    recorder.start({"task": "lift"})
    start = time.perf_counter()
    accepted = sum(recorder.write("/count", k, float64_array_msg("humble", np.zeros(1))) for k in range(100))
    assert time.perf_counter() - start < 0.5  # 100 writes did not wait for a 50 ms-per-message disk
    assert recorder.stats.dropped == 100 - accepted > 0



def test_the_recorder_node_records_every_topic_and_survives_sigkill(tmp_path):
    endpoint = free_endpoint()
    router = open_router(endpoint)
    cli = [sys.executable, "-m", "dbp_control.cli.main", "node"]
    # its output is kept (a few log lines) so that a robot that does not stop shows its threads' stacks
    sim = subprocess.Popen(cli + ["sim_robot", "--endpoint", endpoint, "--set", "image_height=48",
                                  "--set", "image_width=64"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    recorder = subprocess.Popen(cli + ["recorder", "--endpoint", endpoint, "--set", f"out_dir={tmp_path}",
                                       "--set", "object_poses=true"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    client = ZenohNode("recorder_test", endpoint=endpoint)
    control = client.publisher(CHANNELS["episode_control"])
    arm = client.publisher(CHANNELS["left_arm_command"])
    # the other arm as a command node with command_type: trajectory would drive it
    arm_trajectory = client.publisher(CHANNELS["right_arm_trajectory"])
    string = typestore("humble").types["std_msgs/msg/String"]
    statuses: list[dict] = []
    joint_states: list[object] = []
    client.subscribe(CHANNELS["recorder_status"], lambda msg: statuses.append(json.loads(msg.data)))
    client.subscribe(CHANNELS["joint_states"], joint_states.append)
    threading.Thread(target=client.spin, daemon=True).start()
    try:
        # both processes up and discovered (the recorder reports, the robot publishes), on a loaded machine too
        assert wait_for(lambda: statuses and joint_states, 60), f"recorder or robot silent: {statuses[-1:]}"
        time.sleep(1.0)  # the recorder's subscriptions reach the robot's publishers
        control.publish(string(data='start {"task": "lift", "note": "e2e"}'))
        assert wait_for(lambda: statuses[-1]["recording"], 10), statuses[-1]
        for _ in range(100):  # two seconds of commands, as the command node would send
            arm.publish(float64_array_msg("humble", np.zeros(7)))
            arm_trajectory.publish(joint_trajectory_msg("humble", 0, "", joint_names("right"), np.zeros((1, 7)), 0.0,
                                                        first_s=0.02))
            time.sleep(0.02)
        control.publish(string(data="success"))
        control.publish(string(data="stop"))
        # a finished bag leaves .recording/ for the output folder once it is closed
        assert wait_for(lambda: any(not p.name.startswith(".") for p in tmp_path.iterdir()), 20), statuses[-1]
        bags = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
        assert len(bags) == 1, bags
        topics = {m.topic for m in read_bag(bags[0])}
        expected = {CHANNELS[n].topic for n in ("joint_states", "left_arm_command", "right_arm_trajectory",
                                                "object_poses", "head_image",
                                                "head_camera_info", "left_wrist_image", "right_wrist_image")}
        assert expected <= topics
        info = read_episode_info(bags[0])
        assert info["success"] is True and info["note"] == "e2e"
        control.publish(string(data="start"))
        assert wait_for(lambda: statuses[-1]["recording"], 10), statuses[-1]
        time.sleep(2.0)  # a bag in progress worth recovering
        os.kill(recorder.pid, signal.SIGKILL)
        recorder.wait(timeout=10)
        killed = next((tmp_path / ".recording").iterdir())
        with pytest.raises(BagError):
            list(read_bag(killed))
        report = recover_bag(killed, tmp_path / "recovered")
        assert {CHANNELS["joint_states"].topic, CHANNELS["head_image"].topic} <= set(report.topics)
        assert report.topics[CHANNELS["joint_states"].topic] > 50
    finally:
        try:
            stop_processes([sim, recorder])
        finally:
            client.shutdown()
            router.close()
