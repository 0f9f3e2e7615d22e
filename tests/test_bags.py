"""rosbag2 episodes: write, read back, compare every message; metadata version; damaged bags."""

import json

import numpy as np
import pytest
import yaml

from dbp_control.core.data.bags import (
    EPISODE_INFO_TOPIC,
    BagError,
    EpisodeBagWriter,
    float64_array_msg,
    image_msg,
    joint_state_msg,
    joint_trajectory_msg,
    read_bag,
    read_episode_info,
    stamp_ns_of,
    typestore,
)

TOPICS = {
    "/cameras/head/color/image_raw": "sensor_msgs/msg/Image",
    "/joint_states": "sensor_msgs/msg/JointState",
    "/left_arm/forward_position_controller/commands": "std_msgs/msg/Float64MultiArray",
}
JOINTS = [f"left_{j}" for j in ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint")]


def _episode(distro, n=5):
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        t = 1_700_000_000_000_000_000 + k * 33_333_333
        out.append(("/cameras/head/color/image_raw", t, image_msg(distro, t, "head_color_optical_frame",
                                                                 rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))))
        out.append(("/joint_states", t + 1000, joint_state_msg(distro, t + 1000, JOINTS, rng.normal(size=3))))
        out.append(("/left_arm/forward_position_controller/commands", t + 2000, float64_array_msg(distro, rng.normal(size=3))))
    return out


def _same(a, b):
    """Field-by-field equality of two rosbags messages (arrays compared exactly)."""
    assert type(a).__name__ == type(b).__name__
    for field in a.__dataclass_fields__:
        x, y = getattr(a, field), getattr(b, field)
        if hasattr(x, "__dataclass_fields__"):
            _same(x, y)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        elif isinstance(x, list) and x and hasattr(x[0], "__dataclass_fields__"):
            for u, v in zip(x, y, strict=True):
                _same(u, v)
        else:
            assert x == y, field


def test_message_builders_take_strided_arrays():
    """Reordered views (e.g. values[::-1]) are not contiguous; the CDR serialiser needs contiguous arrays."""
    store = typestore("humble")
    values = np.arange(6.0)[::-1]
    messages = [float64_array_msg("humble", values), joint_state_msg("humble", 5, JOINTS + JOINTS, values, values),
                joint_trajectory_msg("humble", 5, "", JOINTS + JOINTS, np.arange(12.0).reshape(2, 6)[:, ::-1], 0.1)]
    for msg in messages:
        back = store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
        _same(msg, back)
    np.testing.assert_array_equal(messages[2].points[1].positions, [11, 10, 9, 8, 7, 6])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_round_trip_every_message(tmp_path, storage, distro):
    written = _episode(distro)
    path = tmp_path / "episode_0000"
    info = {"task": "handover", "seed": 3, "success": True}
    with EpisodeBagWriter(path, topics=TOPICS, storage=storage, distro=distro) as bag:
        for topic, t, msg in written:
            bag.write(topic, t, msg)
        bag.close(info)
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["version"] == 8
    assert metadata["storage_identifier"] == storage
    assert json.loads(metadata["custom_data"]["dbp_control.episode"]) == info
    read = [m for m in read_bag(path, distro=distro) if m.topic != EPISODE_INFO_TOPIC]
    assert [(m.topic, m.log_time_ns) for m in read] == [(topic, t) for topic, t, _ in written]
    for (_, _, original), message in zip(written, read, strict=True):
        _same(original, message.msg)
    assert read_episode_info(path) == info
    assert stamp_ns_of(read[0].msg) == written[0][1]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_compressed_bags_round_trip_and_are_smaller(tmp_path, storage):
    # flat images, as rendered scenes largely are: compressible
    written = [("/cameras/head/color/image_raw", t, image_msg("humble", t, "f", np.full((96, 128, 3), 90, np.uint8)))
               for t in range(1, 40)]
    sizes = {}
    for compress in (False, True):
        path = tmp_path / f"ep_{compress}"
        with EpisodeBagWriter(path, topics=TOPICS, storage=storage, compress=compress) as bag:
            for topic, t, msg in written:
                bag.write(topic, t, msg)
        sizes[compress] = sum(f.stat().st_size for f in path.iterdir() if f.name != "metadata.yaml")
        metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert metadata["compression_mode"].upper() == ("MESSAGE" if compress else "")
        for (_, _, original), message in zip(written, read_bag(path), strict=True):
            _same(original, message.msg)
    assert sizes[True] < sizes[False] / 4


def test_an_existing_episode_is_never_overwritten(tmp_path):
    path = tmp_path / "ep"
    with EpisodeBagWriter(path, topics=TOPICS) as bag:
        bag.close({"task": "lift"})
    before = sorted(p.name for p in path.iterdir())
    with pytest.raises(BagError, match="refusing to overwrite"):
        EpisodeBagWriter(path, topics=TOPICS)
    assert sorted(p.name for p in path.iterdir()) == before
    assert read_episode_info(path) == {"task": "lift"}


def test_an_exception_while_recording_leaves_a_readable_bag_without_info(tmp_path):
    path = tmp_path / "ep"
    written = _episode("humble", n=2)
    with pytest.raises(RuntimeError, match="teleop died"):
        with EpisodeBagWriter(path, topics=TOPICS) as bag:
            for topic, t, msg in written:
                bag.write(topic, t, msg)
            raise RuntimeError("teleop died")
    assert len(list(read_bag(path))) == len(written)
    assert read_episode_info(path) is None


def test_bad_requests_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown bag storage 'rosbag1'"):
        EpisodeBagWriter(tmp_path / "a", topics=TOPICS, storage="rosbag1")
    with pytest.raises(ValueError, match="unknown ROS distro 'noetic'"):
        typestore("noetic")
    with pytest.raises(ValueError, match="unknown to the humble typestore"):
        EpisodeBagWriter(tmp_path / "b", topics={"/x": "my_msgs/msg/Thing"})
    with EpisodeBagWriter(tmp_path / "c", topics=TOPICS) as bag:
        with pytest.raises(BagError, match="'/cmd_vel' was not declared"):
            bag.write("/cmd_vel", 0, float64_array_msg("humble", np.zeros(1)))
    with pytest.raises(BagError, match=r"no topic\(s\) \['/tf'\]"):
        list(read_bag(tmp_path / "c", topics=["/tf"]))
    with pytest.raises(BagError, match="no bag at"):
        list(read_bag(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        image_msg("humble", 0, "f", np.zeros((4, 4), dtype=np.uint8))


def test_a_truncated_bag_is_reported_not_crashed_on(tmp_path):
    path = tmp_path / "ep"
    with EpisodeBagWriter(path, topics=TOPICS) as bag:
        for topic, t, msg in _episode("humble", n=20):
            bag.write(topic, t, msg)
        bag.close({"task": "lift"})
    data = next(path.glob("*.mcap"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(BagError, match="damaged|cannot open"):
        list(read_bag(path))
