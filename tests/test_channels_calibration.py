import numpy as np
import pytest

from dbp_control.core.calibration import CalibrationError, load_camera_intrinsics
from dbp_control.core.channels import CHANNELS, ROBOT_CHANNELS, channel
from dbp_control.core.data.bags import typestore
from dbp_control.core.layout import CAMERAS


def test_channel_table_is_consistent():
    topics = [c.topic for c in CHANNELS.values()]
    assert len(topics) == len(set(topics))
    for distro in ("humble", "jazzy"):
        assert all(c.msg_type in typestore(distro).types for c in CHANNELS.values())
    assert all(c.rate_hz >= 0 for c in CHANNELS.values())  # 0: sent on events (enable, emergency stop, ...)
    streams = ["joint_states", "left_arm_command", "right_arm_command", *(f"{c}_image" for c in CAMERAS)]
    assert all(ROBOT_CHANNELS[name].rate_hz > 0 for name in streams)
    assert not any(c.sim_only for c in ROBOT_CHANNELS.values()) and ROBOT_CHANNELS["joint_states"] is channel("joint_states")
    # the recorder and the command node drive both arms from one clock
    assert channel("left_arm_command").rate_hz == channel("right_arm_command").rate_hz
    for cam in CAMERAS:
        assert channel(f"{cam}_image").frame_id == channel(f"{cam}_camera_info").frame_id != ""
    with pytest.raises(KeyError, match="unknown channel 'lidar'"):
        channel("lidar")


def test_shipped_calibration_loads_and_scales():
    for cam in CAMERAS:
        intr = load_camera_intrinsics(cam)
        assert (intr.width, intr.height) == (640, 480)
        half = intr.scaled(320, 240)
        np.testing.assert_allclose(half.k, [[307.5, 0, 160], [0, 307.5, 120], [0, 0, 1]])
        assert half.fovy_deg == pytest.approx(intr.fovy_deg)


def test_broken_calibration_files_are_named(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        load_camera_intrinsics("head", tmp_path)
    (tmp_path / "head_camera.yaml").write_text("image_width: 640\nimage_height: 480\ncamera_matrix: {rows: 3, cols: 3, data: [1, 2]}\n")
    with pytest.raises(CalibrationError, match="camera_matrix must be 3x3"):
        load_camera_intrinsics("head", tmp_path)
    (tmp_path / "head_camera.yaml").write_text("image_width: [\n")
    with pytest.raises(CalibrationError, match="not valid YAML"):
        load_camera_intrinsics("head", tmp_path)
