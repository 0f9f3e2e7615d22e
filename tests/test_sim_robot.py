"""The simulated dual-arm robot: UR joint names, tracking of commanded joint targets, cameras."""

import numpy as np
import pytest

from dbp_control.core.sim.robot import HOME_ARM, CameraView, DualArmSim
from dbp_control.core.layout import CAMERAS


@pytest.fixture(scope="module")
def sim():
    return DualArmSim(image_size=(64, 80))


def test_joints_carry_ur_names_per_arm(sim):
    assert sim.names[:7] == [
        "left_shoulder_pan_joint", "left_shoulder_lift_joint", "left_elbow_joint",
        "left_wrist_1_joint", "left_wrist_2_joint", "left_wrist_3_joint", "left_gripper_joint",
    ]
    assert sim.names[7:] == [n.replace("left_", "right_") for n in sim.names[:7]]


def test_home_pose_holds_against_gravity(sim):
    sim.reset()
    start = sim.joint_state().position
    sim.step(2.0)
    np.testing.assert_allclose(sim.joint_state().position, start, atol=1e-3)


def test_tracks_commanded_joint_targets(sim):
    sim.reset()
    targets = np.concatenate([HOME_ARM + [0.2, 0.1, -0.1, 0.1, 0.2, 0.3], [1.0],
                              HOME_ARM + [-0.2, -0.1, 0.1, -0.1, -0.2, -0.3], [0.5]])
    sim.set_targets(targets)
    sim.step(1.5)
    state = sim.joint_state()
    np.testing.assert_allclose(state.position, targets, atol=5e-3)
    assert np.abs(state.velocity).max() < 0.05
    assert sim.time == pytest.approx(1.5, abs=0.01)


def test_tool_points_at_the_table_in_the_home_pose(sim):
    sim.reset()
    for side in ("left", "right"):
        tcp = sim.data.site(f"{side}_tcp")
        approach = tcp.xmat.reshape(3, 3)[:, 2]  # the tool's z axis in the world
        assert approach[2] < -0.9, side  # pointing down
        assert 0.0 < tcp.xpos[2] < 0.3 and 0.3 < tcp.xpos[1] < 0.8, side  # above the table, in front


def test_every_camera_renders_the_scene(sim):
    sim.reset()
    for camera in CAMERAS:
        image = sim.render(camera)
        assert image.shape == (64, 80, 3) and image.dtype == np.uint8
        assert image.std() > 5, camera  # not a blank frame
    with pytest.raises(ValueError, match="unknown camera 'tail'"):
        sim.render("tail")


def test_a_camera_view_draws_a_saved_configuration_as_the_sim_does(sim):
    """What a node's render worker draws from a copy of qpos is the frame the sim would have rendered then,
    whatever the physics did meanwhile."""
    sim.reset()
    view = CameraView(sim)
    sim.set_object_pose("cube", np.array([0.1, 0.55, 0.05]), 0.3)  # a step of mj_forward: the frame is current
    saved = sim.data.qpos.copy()
    expected = {camera: sim.render(camera) for camera in CAMERAS}
    targets = np.concatenate([HOME_ARM + 0.4, [1.0]] * 2)
    sim.set_targets(targets)
    sim.step(0.3)  # the arms, and with them the wrist cameras, move on
    for camera in CAMERAS:
        np.testing.assert_array_equal(view.render(camera, saved), expected[camera], err_msg=camera)
        assert np.abs(sim.render(camera).astype(int) - expected[camera]).mean() > 1, camera  # the scene moved
    with pytest.raises(ValueError, match="unknown camera 'tail'"):
        view.render("tail", saved)


def test_bad_targets_are_rejected(sim):
    with pytest.raises(ValueError, match="expected 14 targets"):
        sim.set_targets(np.zeros(12))
    bad = np.concatenate([HOME_ARM, [0.0]] * 2)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sim.set_targets(bad)


def test_object_pose_round_trips_position_and_yaw(sim):
    sim.reset()
    for yaw in (-0.7, 0.0, 0.4):
        sim.set_object_pose("cube", np.array([0.1, 0.5, 0.025]), yaw)
        np.testing.assert_allclose(sim.object_position("cube"), [0.1, 0.5, 0.025], atol=1e-12)
        assert sim.object_yaw("cube") == pytest.approx(yaw)
