"""Recording expert episodes into rosbag2 through the robot's channels."""

from collections import Counter, defaultdict

import numpy as np
import pytest

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import read_bag, read_episode_info, stamp_ns_of
from dbp_control.core.sim.record import ExecutionNoise, record_episode
from dbp_control.core.sim.robot import DualArmSim
from dbp_control.core.sim.tasks import LiftTask


@pytest.fixture(scope="module")
def sim():
    return DualArmSim(image_size=(24, 32))


def test_an_episode_has_every_channel_at_its_rate(sim, tmp_path):
    episode = record_episode(sim, LiftTask(), 5, tmp_path, start_ns=10**18)
    assert episode.success and episode.path == tmp_path / "lift_seed000005"
    messages = list(read_bag(episode.path))
    counts = Counter(m.topic for m in messages)
    duration = 3.9  # the lift expert's schedule
    recorded = ["joint_states", "left_arm_command", "right_arm_command", "object_poses",
                *(f"{cam}_{kind}" for cam in ("left_wrist", "right_wrist", "head") for kind in ("image", "camera_info"))]
    assert {m.topic for m in messages} == {CHANNELS[name].topic for name in recorded} | {"/episode/info"}
    for channel in (CHANNELS[name] for name in recorded):
        assert counts[channel.topic] == pytest.approx(channel.rate_hz * duration, abs=2), channel.topic
    stamps = defaultdict(list)
    for m in messages:
        if hasattr(m.msg, "header"):
            stamps[m.topic].append(stamp_ns_of(m.msg))
            assert m.msg.header.stamp.sec >= 10**9
    assert all(s == sorted(s) for s in stamps.values())
    image = next(m.msg for m in messages if m.topic == CHANNELS["head_image"].topic)
    assert (image.height, image.width, image.encoding) == (24, 32, "rgb8")
    assert image.header.frame_id == "head_camera_color_optical_frame"
    info = next(m.msg for m in messages if m.topic == CHANNELS["head_camera_info"].topic)
    np.testing.assert_allclose(info.k[[0, 2, 4, 5]], [615 * 32 / 640, 16, 615 * 24 / 480, 12])
    joints = next(m.msg for m in messages if m.topic == "/joint_states")
    assert len(joints.name) == 14 and joints.name[0] == "left_shoulder_pan_joint"
    command = next(m.msg for m in messages if m.topic == CHANNELS["left_arm_command"].topic)
    assert len(command.data) == 7
    assert read_episode_info(episode.path) == {"task": "lift", "seed": 5, "success": True, "strategy": episode.strategy,
                                               "control_hz": 50.0, "image_size": [24, 32], "objects": ["cube", "lid"],
                                               "execution_noise": None}
    poses = next(m.msg for m in messages if m.topic == CHANNELS["object_poses"].topic)
    assert len(poses.poses) == 2 and poses.header.frame_id == "world"
    # the storage file carries the episode's name (rosbag2 names it after the folder it was written in)
    assert [f.name for f in episode.path.iterdir() if f.suffix == ".mcap"] == ["lift_seed000005.mcap"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lift_seed000005"]  # no staging folder left


def test_failures_are_dropped_unless_kept_and_then_marked(sim, tmp_path):
    impossible = LiftTask(lift_height=1.0)
    dropped = record_episode(sim, impossible, 1, tmp_path)
    assert dropped.path is None and not dropped.success
    assert not any(tmp_path.iterdir())
    kept = record_episode(sim, impossible, 1, tmp_path, keep_failure=True)
    assert kept.path == tmp_path / "lift_seed000001_failed"
    assert read_episode_info(kept.path)["success"] is False


def test_an_existing_episode_is_not_recorded_again(sim, tmp_path):
    first = record_episode(sim, LiftTask(), 2, tmp_path)
    before = {p.name: p.stat().st_size for p in first.path.iterdir()}
    with pytest.raises(FileExistsError, match="already recorded"):
        record_episode(sim, LiftTask(), 2, tmp_path)
    assert {p.name: p.stat().st_size for p in first.path.iterdir()} == before


def test_cli_records_and_summarises(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "dbp_control.cli.main", "sim", "record", "--task", "lift", "--episodes", "2",
           "--out", str(tmp_path), "--image-size", "24x32", "--storage", "sqlite3", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "lift: 2/2 successful" in done.stdout and "episodes per minute" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lift_seed000000", "lift_seed000001"]
    assert list((tmp_path / "lift_seed000000").glob("*.db3"))
    bad = subprocess.run(cmd[:6] + ["juggle"] + cmd[7:], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown task 'juggle'" in bad.stderr
    negative = subprocess.run(cmd + ["--execution-noise", "-0.1"], capture_output=True, text=True, timeout=120)
    assert negative.returncode == 2 and "--execution-noise: must be a finite number >= 0, got -0.1" in negative.stderr


def test_handover_episodes_record_their_success(sim, tmp_path):
    from dbp_control.core.sim.tasks import make_task

    episode = record_episode(sim, make_task("handover"), 2, tmp_path)
    assert episode.success and episode.path.name == "handover_seed000002"
    info = read_episode_info(episode.path)
    assert info["task"] == "handover" and info["strategy"] == episode.strategy and info["success"] is True


def test_state_only_episodes_have_no_camera_topics(sim, tmp_path):
    episode = record_episode(sim, LiftTask(), 3, tmp_path, images=False)
    topics = {m.topic for m in read_bag(episode.path)}
    assert not any("camera" in t for t in topics)
    assert {CHANNELS["joint_states"].topic, CHANNELS["left_arm_command"].topic, CHANNELS["object_poses"].topic} <= topics
    assert read_episode_info(episode.path)["image_size"] is None


def _recorded_commands(path):
    """Both arms' recorded commands, one row of 14 per command step."""
    per_arm = [[m.msg.data for m in read_bag(path) if m.topic == CHANNELS[f"{side}_arm_command"].topic]
               for side in ("left", "right")]
    return np.array([np.concatenate(pair) for pair in zip(*per_arm, strict=True)])


def test_execution_noise_offsets_what_the_arms_execute_but_not_what_is_recorded(sim, tmp_path, monkeypatch):
    executed = []
    set_targets = sim.set_targets
    monkeypatch.setattr(sim, "set_targets", lambda targets: (executed.append(np.array(targets)), set_targets(targets)))
    noise = ExecutionNoise(0.01)
    episode = record_episode(sim, LiftTask(), 3, tmp_path / "noisy", images=False, execution_noise=noise)
    assert read_episode_info(episode.path)["execution_noise"] == {"std_rad": 0.01, "time_constant_s": 0.5}
    recorded = _recorded_commands(episode.path)
    offsets = np.array(executed[-len(recorded):]) - recorded  # before them: the reset's home pose
    grippers = [6, 13]
    assert np.all(offsets[:, grippers] == 0)  # the grippers open and close as the expert says
    arm = np.delete(offsets, grippers, axis=1)
    assert 0.3 * noise.std_rad < arm.std() < 2 * noise.std_rad  # a drifting offset of about the asked std
    # slowly: a command period (20 ms) is 1/25 of the time constant, so a step moves it by about a quarter of
    # its std, where independent draws would move it by more than the std
    assert np.abs(np.diff(arm, axis=0)).mean() < 0.5 * noise.std_rad
    # without noise the arms execute exactly what is recorded
    executed.clear()
    clean = record_episode(sim, LiftTask(), 3, tmp_path / "clean", images=False)
    assert read_episode_info(clean.path)["execution_noise"] is None
    recorded = _recorded_commands(clean.path)
    assert np.array_equal(np.array(executed[-len(recorded):]), recorded)
    for bad in (-0.01, float("nan")):
        with pytest.raises(ValueError, match="execution noise std must be a finite number of radians >= 0"):
            ExecutionNoise(bad)
    for bad in (0.0, 0.02):  # a time constant of one command period or less would not be a drift
        with pytest.raises(ValueError, match=r"time constant must be longer than one command period \(0.02 s\)"):
            ExecutionNoise(0.01, time_constant_s=bad)


def test_recorded_episodes_compile_into_a_dataset(sim, tmp_path):
    from dbp_control.core.data.dataset import BuildConfig, Dataset, build_dataset

    # position commands only: the other command type's topics are not in these bags
    for seed, noise in ((3, None), (4, ExecutionNoise(0.005))):
        record_episode(sim, LiftTask(), seed, tmp_path / "bags", images=False, execution_noise=noise)
    build_dataset([tmp_path / "bags"], tmp_path / "ds.zarr", BuildConfig(cameras=(), objects=True))
    dataset = Dataset(tmp_path / "ds.zarr")
    assert len(dataset.episodes) == 2 and dataset.layout["objects"] is not None
    # each episode says how it was recorded
    assert [e["execution_noise"] for e in dataset.episodes] == [None, {"std_rad": 0.005, "time_constant_s": 0.5}]


def test_disk_full_keeps_earlier_episodes_and_names_the_problem(sim, tmp_path, monkeypatch):
    import errno

    from dbp_control.core.data.bags import BagError, EpisodeBagWriter

    first = record_episode(sim, LiftTask(), 0, tmp_path, images=False)
    real_write, written = EpisodeBagWriter.write, []

    def write_until_full(self, topic, stamp_ns, msg):
        if len(written) >= 50:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(topic)
        real_write(self, topic, stamp_ns, msg)

    monkeypatch.setattr(EpisodeBagWriter, "write", write_until_full)
    with pytest.raises(BagError, match="disk full while recording lift_seed000001.*intact"):
        record_episode(sim, LiftTask(), 1, tmp_path, images=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lift_seed000000"]
    assert read_episode_info(first.path)["success"] is True and len(list(read_bag(first.path))) > 100


def test_a_real_full_disk_is_reported(sim, tmp_path):
    """On a 1 MB tmpfs (needs mount permission): the first episode fits, the second cannot."""
    import subprocess

    from dbp_control.core.data.bags import BagError

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        first = record_episode(sim, LiftTask(), 0, small, images=False)
        with pytest.raises(BagError, match="disk full"):
            for seed in range(1, 20):
                record_episode(sim, LiftTask(), seed, small, images=False)
        assert read_episode_info(first.path)["success"] is True
        assert not (small / ".recording").exists()
    finally:
        subprocess.run(["umount", str(small)], check=True)
