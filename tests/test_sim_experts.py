"""Differential IK, the lift task and its scripted expert."""

import numpy as np
import pytest

from dbp_control.core.sim.experts import run_episode
from dbp_control.core.sim.ik import dls_step, orientation_error, tool_down_rotation
from dbp_control.core.sim.robot import DualArmSim
from dbp_control.core.sim.tasks import LiftTask, make_task


@pytest.fixture(scope="module")
def sim():
    return DualArmSim(image_size=(32, 32))


def test_dls_step_solves_a_well_conditioned_system_and_damps_a_singular_one():
    jac = np.array([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(dls_step(jac, np.array([2.0, 1.0]), damping=1e-6), [1.0, 1.0], rtol=1e-6)
    singular = np.array([[1.0, 0.0], [0.0, 0.0]])
    step = dls_step(singular, np.array([0.0, 1.0]), damping=0.05)
    assert np.all(np.isfinite(step)) and np.abs(step).max() < 1e-9  # no motion along the lost direction


def test_tool_down_rotation_and_orientation_error():
    for yaw in (0.0, 0.7, -2.0):
        r = tool_down_rotation(yaw)
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        np.testing.assert_allclose(r[:, 2], [0, 0, -1])
        np.testing.assert_allclose(orientation_error(r, r), 0, atol=1e-12)
    # a small yaw difference shows up as rotation about the vertical
    err = orientation_error(tool_down_rotation(0.0), tool_down_rotation(0.01))
    assert err[2] == pytest.approx(0.01, rel=1e-3) and abs(err[0]) < 1e-9 and abs(err[1]) < 1e-9


def test_ik_moves_the_tool_to_a_target(sim):
    sim.reset()
    ik = sim.arm_ik("left")
    goal = sim.site_position("left_tcp") + [0.08, -0.05, 0.06]
    for _ in range(100):
        targets = sim.joint_state().position.copy()
        targets[:6] = ik.targets(goal, tool_down_rotation(0.3))
        sim.set_targets(targets)
        sim.step(0.02)
    assert np.linalg.norm(sim.site_position("left_tcp") - goal) < 5e-3
    with pytest.raises(ValueError, match="unknown arm 'middle'"):
        sim.arm_ik("middle")


def test_task_reset_places_the_cube_by_seed(sim):
    task = LiftTask()
    task.reset(sim, 3)
    first = sim.object_position("cube")
    task.reset(sim, 3)
    np.testing.assert_allclose(sim.object_position("cube"), first)
    task.reset(sim, 4)
    assert not np.allclose(sim.object_position("cube"), first)
    assert not task.success(sim) and 0.0 <= task.reward(sim) < 1.0
    with pytest.raises(ValueError, match="unknown task 'juggle'"):
        make_task("juggle")


def test_lift_expert_succeeds_with_both_grasp_strategies(sim):
    task = LiftTask()
    results = [run_episode(sim, task, seed) for seed in range(8)]
    assert sum(ok for ok, _ in results) >= 7
    assert {strategy for _, strategy in results} == {"grasp_x_faces", "grasp_y_faces"}
    assert task.reward(sim) > 1.5  # the last episode ends with the cube held up


def test_handover_expert_passes_the_cube_with_either_arm_giving(sim):
    task = make_task("handover")
    results = [run_episode(sim, task, seed) for seed in range(8)]
    assert sum(ok for ok, _ in results) >= 7
    assert {strategy.split("_")[0] for _, strategy in results} == {"left", "right"}
    assert task.first_holder is not None and task.reward(sim) > 1.5


def test_lifting_without_handing_over_is_not_a_handover(sim):
    from dbp_control.core.sim.experts import LiftExpert

    task = make_task("handover")
    task.reset(sim, 0)
    expert = LiftExpert(sim, LiftTask(), np.random.default_rng(0))  # the left arm lifts and keeps it
    for k in range(int(expert.duration / 0.02)):
        sim.set_targets(expert.targets(k * 0.02))
        sim.step(0.02)
        task.observe(sim)
    assert task.first_holder == "left"
    assert not task.success(sim)


def test_transport_expert_puts_the_cube_in_the_box_with_either_arm_on_the_lid(sim):
    task = make_task("transport")
    results = [run_episode(sim, task, seed) for seed in range(6)]
    assert sum(ok for ok, _ in results) >= 5
    assert {strategy for _, strategy in results} == {"left_lifts_lid", "right_lifts_lid"}
    assert task.reward(sim) == 2.0


def test_a_cube_on_the_lid_is_not_in_the_box(sim):
    from dbp_control.core.sim.scene import BOX_HEIGHT, BOX_POS

    task = make_task("transport")
    task.reset(sim, 0)
    assert not task.success(sim)
    sim.set_object_pose("cube", np.array([BOX_POS[0], BOX_POS[1] + 0.05, BOX_HEIGHT + 0.04]), 0.0)
    sim.step(0.5)
    assert not task.success(sim)


def test_cli_reports_expert_success_per_strategy():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "dbp_control.cli.main", "sim", "experts", "--task", "transport",
                           "--episodes", "2", "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "transport  all" in done.stdout and "/2" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "dbp_control.cli.main", "sim", "experts", "--task", "juggle"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown task 'juggle'" in bad.stderr
