"""Compiling episode bags into the training dataset, and reading training windows back."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import (
    EpisodeBagWriter,
    float64_array_msg,
    image_msg,
    joint_state_msg,
    joint_trajectory_msg,
    pose_array_msg,
)
from dbp_control.core.data.dataset import (
    BuildConfig,
    Dataset,
    DatasetError,
    WindowDataset,
    build_dataset,
)
from dbp_control.core.layout import CAMERAS, ROBOT_JOINTS, SIDES, joint_names

T0 = 1_700_000_000 * 10**9
MS = 1_000_000


def joint_value(t_ns: int) -> np.ndarray:
    """Known joint positions at time t: joint j = j + t in seconds."""
    return np.arange(14) + (t_ns - T0) / 1e9


def command_value(t_ns: int, side: int) -> np.ndarray:
    return 100 * (side + 1) + np.full(7, (t_ns - T0) / 1e9)


def frame_colour(frame: int, cam: int) -> int:
    return (10 * frame + 50 * cam) % 256


def write_episode(path: Path, *, seconds: float = 2.0, cameras: tuple[str, ...] = CAMERAS, camera_lag_ms: int = 3,
                  success: bool = True, info: bool = True, shuffled_joints: bool = False, objects: bool = True,
                  encoding: str = "rgb8", command_types: tuple[str, ...] = ("position",)) -> Path:
    """Joint states at 125 Hz, commands at 50 Hz, cameras at 30 Hz stamped `camera_lag_ms` after the
    period boundary, each frame one flat colour that names it. Commands go to the position topics and/or
    (command_types) as one-point JointTrajectory messages, joints in reverse order, to the trajectory topics."""
    topics = {CHANNELS["joint_states"].topic: "sensor_msgs/msg/JointState",
              **{CHANNELS[f"{s}_arm_command"].topic: "std_msgs/msg/Float64MultiArray" for s in SIDES},
              **{CHANNELS[f"{s}_arm_trajectory"].topic: "trajectory_msgs/msg/JointTrajectory" for s in SIDES},
              **{CHANNELS[f"{c}_image"].topic: "sensor_msgs/msg/Image" for c in cameras}}
    if objects:
        topics[CHANNELS["object_poses"].topic] = "geometry_msgs/msg/PoseArray"
    events = []
    for k in range(int(seconds * 125)):
        events.append((T0 + k * 8 * MS, "joints", k))
    for k in range(int(seconds * 50)):
        events.append((T0 + k * 20 * MS, "command", k))
    for k in range(int(seconds * 30)):
        events.append((T0 + round(k * 1e9 / 30) + camera_lag_ms * MS, "camera", k))
    names = list(ROBOT_JOINTS)
    order = np.random.default_rng(0).permutation(14) if shuffled_joints else np.arange(14)
    with EpisodeBagWriter(path, topics=topics) as bag:
        for t, kind, k in sorted(events):
            if kind == "joints":
                values = joint_value(t)
                bag.write("/joint_states", t, joint_state_msg("humble", t, [names[i] for i in order], values[order]))
                if objects:
                    bag.write(CHANNELS["object_poses"].topic, t,
                              pose_array_msg("humble", t, "world", np.tile([0.1, 0.2, 0.3, 1, 0, 0, 0], (2, 1))))
            elif kind == "command":
                for i, side in enumerate(SIDES):
                    if "position" in command_types:
                        bag.write(CHANNELS[f"{side}_arm_command"].topic, t, float64_array_msg("humble", command_value(t, i)))
                    if "trajectory" in command_types:
                        bag.write(CHANNELS[f"{side}_arm_trajectory"].topic, t, joint_trajectory_msg(
                            "humble", 0, "", joint_names(side)[::-1], command_value(t, i)[None, ::-1], 0.0, first_s=0.02))
            else:
                for i, cam in enumerate(cameras):
                    rgb = np.full((48, 64, 3), frame_colour(k, i), np.uint8)
                    msg = image_msg("humble", t, cam, rgb)
                    msg.encoding = encoding
                    bag.write(CHANNELS[f"{cam}_image"].topic, t, msg)
        bag.close({"task": "lift", "seed": 7, "success": success, "strategy": "x"} if info else None)
    return path


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()


def test_steps_take_the_freshest_joint_state_synchronised_images_and_command_in_effect(tmp_path):
    bag = write_episode(tmp_path / "bags" / "ep0", shuffled_joints=True)
    report = build_dataset([bag], tmp_path / "ds.zarr", BuildConfig(image_size=(24, 32), rate_hz=10.0, objects=True))
    assert report.episodes == 1 and not report.skipped
    ds = Dataset(tmp_path / "ds.zarr")
    stamps = ds.array("stamp_ns")
    # the first step is when every input has arrived: the first camera set at 3 ms, then every 100 ms
    assert stamps[0] == T0 + 3 * MS
    np.testing.assert_array_equal(np.diff(stamps), 100 * MS)
    assert ds.steps == 20  # 3 ms .. 1903 ms; the last message is at 1992 ms
    for i, t in enumerate(stamps):
        latest_joint = T0 + ((t - T0) // (8 * MS)) * 8 * MS
        np.testing.assert_allclose(ds.array("state")[i], joint_value(latest_joint), atol=1e-5)  # layout order
        latest_command = T0 + ((t - T0) // (20 * MS)) * 20 * MS
        np.testing.assert_allclose(ds.array("action")[i], np.concatenate([command_value(latest_command, s) for s in (0, 1)]),
                                   atol=1e-4)
        frame = round((t - T0 - 3 * MS) / (1e9 / 30))  # a camera set arrives exactly at each step
        for c, cam in enumerate(CAMERAS):
            image = ds.array(f"images/{cam}")[i]
            assert image.shape == (24, 32, 3) and (image == frame_colour(frame, c)).all(), (i, cam)
    np.testing.assert_allclose(ds.array("image_age_ms"), 0.0)
    np.testing.assert_allclose(ds.array("objects")[0], [0.1, 0.2, 0.3, 1, 0, 0, 0] * 2, atol=1e-6)
    assert ds.layout["joints"] == list(ROBOT_JOINTS)
    assert ds.layout["action"]["left"]["topic"] == "/left_arm/forward_position_controller/commands"
    assert ds.layout["cameras"]["head"] == {"topic": "/head_camera/color/image_raw", "size": [24, 32]}
    assert ds.build["slop_s"] == BuildConfig().slop_s and ds.episodes[0]["task"] == "lift"


def test_between_camera_frames_a_step_reuses_the_latest_set_and_records_its_age(tmp_path):
    bag = write_episode(tmp_path / "ep")
    ds = Dataset(build_dataset([bag], tmp_path / "ds.zarr", BuildConfig(image_size=(24, 32), rate_hz=25.0)).out)
    frame_stamps = np.array([T0 + round(k * 1e9 / 30) + 3 * MS for k in range(60)])
    for i, t in enumerate(ds.array("stamp_ns")):
        frame = int(np.searchsorted(frame_stamps, t, side="right")) - 1
        assert (ds.array("images/head")[i] == frame_colour(frame, 2)).all(), i
        assert ds.array("image_age_ms")[i] == pytest.approx((t - frame_stamps[frame]) / 1e6, abs=1e-3)
    assert 0 < ds.array("image_age_ms").max() < 1000 / 30


def test_a_slop_too_tight_for_the_stamps_finds_no_camera_set(tmp_path):
    """Camera stamps are at least 0.33 ms from any joint state's: a 1 us slop never matches them."""
    bag = write_episode(tmp_path / "ep")
    with pytest.raises(DatasetError, match="never got a synchronised camera set"):
        build_dataset([bag], tmp_path / "ds.zarr", BuildConfig(image_size=(24, 32), slop_s=1e-6))


def test_stats_split_and_episode_boundaries(tmp_path):
    bags = [write_episode(tmp_path / "bags" / f"ep{i}", seconds=1.0 + 0.5 * i) for i in range(5)]
    report = build_dataset([tmp_path / "bags"], tmp_path / "ds.zarr", BuildConfig(cameras=(), val_fraction=0.2, seed=3))
    ds = Dataset(report.out)
    lengths = np.diff(np.concatenate([[0], ds.episode_ends]))
    assert len(lengths) == 5 and list(lengths) == sorted(lengths) and lengths[0] > 0
    assert sorted(ds.split["train"] + ds.split["val"]) == list(range(5)) and len(ds.split["val"]) == 1
    train = np.concatenate([ds.array("state")[ds.episode_slice(i)] for i in ds.split["train"]])
    np.testing.assert_allclose(ds.stats["state"]["mean"], train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(ds.stats["action"]["max"], np.concatenate(
        [ds.array("action")[ds.episode_slice(i)] for i in ds.split["train"]]).max(0), rtol=1e-6)
    assert ds.cameras == () and [e["source"] for e in ds.episodes] == [str(b.resolve()) for b in bags]


def test_commands_sent_as_joint_trajectories_give_the_same_actions(tmp_path):
    """A command node with command_type: trajectory is recorded on the trajectory topics; its one-point
    trajectories (joints in any order) give the same actions as the position commands."""
    cfg = BuildConfig(image_size=(24, 32), rate_hz=10.0, objects=True)
    actions = {}
    for kind in ("position", "trajectory"):
        bag = write_episode(tmp_path / kind / "ep0", command_types=(kind,))
        report = build_dataset([bag], tmp_path / f"{kind}.zarr", cfg)
        assert report.episodes == 1 and not report.skipped
        actions[kind] = Dataset(tmp_path / f"{kind}.zarr").array("action")
    assert len(actions["trajectory"]) == 20
    np.testing.assert_array_equal(actions["trajectory"], actions["position"])


def test_an_arm_commanded_on_both_command_topics_is_skipped_with_both_named(tmp_path):
    bag = write_episode(tmp_path / "bags" / "ep0", command_types=("position", "trajectory"))
    report = build_dataset([bag, write_episode(tmp_path / "bags" / "ep1")], tmp_path / "ds.zarr",
                           BuildConfig(image_size=(24, 32), objects=True))
    assert report.episodes == 1
    [(skipped, reason)] = report.skipped
    assert skipped == bag
    assert "left arm is commanded on both" in reason
    assert CHANNELS["left_arm_command"].topic in reason and CHANNELS["left_arm_trajectory"].topic in reason


def test_damaged_and_failed_episodes_are_reported_skipped_and_left_untouched(tmp_path):
    bags = tmp_path / "bags"
    good = write_episode(bags / "a_good")
    write_episode(bags / "b_no_head", cameras=("left_wrist", "right_wrist"))
    write_episode(bags / "c_failed", success=False)
    write_episode(bags / "d_no_info", info=False)
    truncated = write_episode(bags / "e_truncated")
    storage = next(truncated.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    write_episode(bags / "f_depth", encoding="16UC1")
    (bags / "g_metadata_only").mkdir()
    (bags / "g_metadata_only" / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 8}\n")
    before = tree_digest(bags)
    report = build_dataset([bags], tmp_path / "ds.zarr", BuildConfig(image_size=(24, 32)))
    reasons = {bag.name: reason for bag, reason in report.skipped}
    assert report.episodes == 1 and Dataset(report.out).episodes[0]["source"] == str(good.resolve())
    assert "has no topic(s) ['/head_camera/color/image_raw']" in reasons["b_no_head"]
    assert "failed episode" in reasons["c_failed"]
    assert "no episode info" in reasons["d_no_info"]
    assert "e_truncated" in reasons and "g_metadata_only" in reasons
    assert "encoding '16UC1' is not supported" in reasons["f_depth"]
    assert tree_digest(bags) == before  # bags are only read
    assert report.out.exists() and not (tmp_path / ".ds.zarr.partial").exists()


def test_no_usable_episode_writes_nothing(tmp_path):
    bag = write_episode(tmp_path / "failed", success=False)
    with pytest.raises(DatasetError, match="no usable episode.*failed episode"):
        build_dataset([bag], tmp_path / "ds.zarr", BuildConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failed"]


def test_an_existing_dataset_is_never_overwritten(tmp_path):
    bag = write_episode(tmp_path / "ep")
    out = tmp_path / "ds.zarr"
    build_dataset([bag], out, BuildConfig(cameras=()))
    digest = tree_digest(out)
    with pytest.raises(DatasetError, match="already exists"):
        build_dataset([bag], out, BuildConfig(cameras=()))
    assert tree_digest(out) == digest


def test_disk_full_while_building_removes_the_partial_dataset(tmp_path, monkeypatch):
    import errno

    import zarr

    bag = write_episode(tmp_path / "ep")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr.Array, "append", full)
    with pytest.raises(DatasetError, match="disk full"):
        build_dataset([bag], tmp_path / "ds.zarr", BuildConfig(cameras=()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep"]


def test_windows_pad_episode_edges_and_give_policy_shaped_batches(tmp_path):
    bags = [write_episode(tmp_path / f"ep{i}", seconds=1.0) for i in range(2)]
    ds = Dataset(build_dataset(bags, tmp_path / "ds.zarr", BuildConfig(image_size=(24, 32), val_fraction=0.5,
                                                                           objects=True)).out)
    windows = WindowDataset(ds, "train", n_obs_steps=2, horizon=8, n_action_steps=4, use_objects=True)
    episode = ds.split["train"][0]
    length = ds.episode_slice(episode).stop - ds.episode_slice(episode).start
    assert len(windows) == length - 8 + 4 + 1  # starts -1 .. length - horizon + n_action_steps - 1
    first = windows.batch(torch.tensor([0]))
    state = ds.array("state")[ds.episode_slice(episode)]
    np.testing.assert_array_equal(first["state"][0, :, :14].numpy(), state[[0, 0]])  # padded with the first step
    assert first["state"].shape == (1, 2, 14 + 14) and first["action"].shape == (1, 8, 14)
    assert first["images"]["head"].shape == (1, 2, 3, 24, 32) and first["images"]["head"].dtype == torch.uint8
    last = windows.batch(torch.tensor([len(windows) - 1]))["action"][0].numpy()
    np.testing.assert_array_equal(last[-1], ds.array("action")[ds.episode_slice(episode)][-1])


def test_opening_bad_datasets_names_the_problem(tmp_path):
    import zarr

    with pytest.raises(DatasetError, match="no dataset at"):
        Dataset(tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError):
        Dataset(tmp_path / "empty")
    out = build_dataset([write_episode(tmp_path / "ep")], tmp_path / "ds.zarr", BuildConfig(cameras=())).out
    root = zarr.open_group(out, mode="r+")
    split = dict(root.attrs)["split"]
    root.attrs["split"] = {"train": []}
    with pytest.raises(DatasetError, match="split does not list every episode"):
        Dataset(out)
    root.attrs["split"] = split
    ds = Dataset(out)
    with pytest.raises(DatasetError, match="the 'val' split is empty"):
        WindowDataset(ds, "val", n_obs_steps=2, horizon=8, n_action_steps=4)
    with pytest.raises(DatasetError, match="no 'test' split"):
        WindowDataset(ds, "test", n_obs_steps=2, horizon=8, n_action_steps=4)
    with pytest.raises(DatasetError, match="no object poses"):
        WindowDataset(ds, "train", n_obs_steps=2, horizon=8, n_action_steps=4, use_objects=True)
    del root.attrs["stats"]
    with pytest.raises(DatasetError, match="no 'stats' attribute"):
        Dataset(out)


def test_unknown_camera_is_a_clear_error():
    with pytest.raises(DatasetError, match=r"unknown camera\(s\) \['tail'\]"):
        BuildConfig(cameras=("head", "tail"))


def test_cli_builds_and_benchmarks_reading(tmp_path):
    for i in range(2):
        write_episode(tmp_path / "bags" / f"ep{i}")
    out = tmp_path / "ds.zarr"
    cli = [sys.executable, "-m", "dbp_control.cli.main", "dataset"]
    done = subprocess.run(cli + ["build", str(tmp_path / "bags"), str(out), "--image-size", "24x32", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 episodes" in done.stdout and "kB per episode" in done.stdout
    info = subprocess.run(cli + ["info", str(out), "--bench", "--batch-size", "8"], capture_output=True, text=True,
                          timeout=120)
    assert info.returncode == 0, info.stderr
    assert "camera head: 24x32" in info.stdout and "samples/s" in info.stdout
    again = subprocess.run(cli + ["build", str(tmp_path / "bags"), str(out)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr
