"""The command core: chunk timing and blending, safety limits, watchdog, enable and emergency stop."""

import numpy as np
import pytest

from dbp_control.core.command.controller import NS, CommandController, TimedChunk
from dbp_control.core.command.safety import LimitsError, SafetyFilter, load_joint_limits
from dbp_control.core.layout import ROBOT_JOINTS

MS = 1_000_000


@pytest.fixture()
def controller():
    limits = load_joint_limits(ROBOT_JOINTS)
    c = CommandController(SafetyFilter(limits, rate_hz=100.0), rate_hz=100.0, watchdog_s=0.2, blend_s=0.0)
    c.on_joint_state(np.zeros(14), 0)
    c.set_enabled(True)
    return c


def ramp(start, per_step, steps=16):
    return np.asarray(start) + np.arange(steps)[:, None] * per_step


def test_the_shipped_limits_cover_every_joint_and_reject_bad_files(tmp_path):
    limits = load_joint_limits(ROBOT_JOINTS)
    assert limits.names == ROBOT_JOINTS and (limits.lower < limits.upper).all()
    assert limits.upper[ROBOT_JOINTS.index("left_gripper_joint")] == 1.0
    bad = tmp_path / "limits.yaml"
    bad.write_text("joints:\n  left_shoulder_pan_joint: {lower: 1, upper: -1, max_velocity: 1}\n")
    with pytest.raises(LimitsError, match="no limits for joint"):
        load_joint_limits(ROBOT_JOINTS, bad)
    with pytest.raises(LimitsError, match="lower < upper"):
        load_joint_limits(["left_shoulder_pan_joint"], bad)
    with pytest.raises(LimitsError, match="no joint limits file"):
        load_joint_limits(ROBOT_JOINTS, tmp_path / "missing.yaml")


def test_chunk_steps_are_due_at_stamp_plus_k_steps_and_interpolated():
    chunk = TimedChunk(ramp(np.zeros(2), np.array([1.0, 2.0]), 4), stamp_ns=1 * NS, step_ns=100 * MS, received_ns=0)
    np.testing.assert_allclose(chunk.at(1 * NS), [0, 0])
    np.testing.assert_allclose(chunk.at(1 * NS + 150 * MS), [1.5, 3.0])
    np.testing.assert_allclose(chunk.at(1 * NS + 300 * MS), [3, 6])
    assert chunk.at(1 * NS + 301 * MS) is None


def test_commands_follow_the_chunk_within_velocity_limits(controller):
    controller.on_chunk(ramp(np.zeros(14), 0.001), stamp_ns=0, step_s=0.01, now_ns=0)
    commands = [controller.tick(k * 10 * MS) for k in range(10)]
    np.testing.assert_allclose(commands[5], np.full(14, 0.005))
    far = ramp(np.full(14, 1.0), 0.0)  # a jump of 1 rad: at most 1.5 rad/s * 10 ms per tick
    controller.on_chunk(far, stamp_ns=100 * MS, step_s=0.01, now_ns=100 * MS)
    before = controller.tick(100 * MS)
    after = controller.tick(110 * MS)
    assert (np.abs(after - before) <= controller.safety.limits.max_velocity / 100 + 1e-12).all()
    assert controller.safety.report.limited_velocity > 0


def test_positions_are_clamped_to_the_limits(controller):
    gripper = ROBOT_JOINTS.index("left_gripper_joint")
    target = np.zeros(14)
    target[gripper] = 5.0
    for k in range(40):  # fresh chunks and joint states every 10 ms; closing 1.0 at 4 per second takes 25 ticks
        now = k * 10 * MS
        controller.on_chunk(np.stack([target] * 16), stamp_ns=now, step_s=0.01, now_ns=now)
        controller.on_joint_state(np.zeros(14), now)
        command = controller.tick(now)
    assert command[gripper] == pytest.approx(1.0) and controller.safety.report.clamped_position > 0


def test_every_command_is_inside_the_limits_when_the_measured_position_is_not(controller):
    """The simulated gripper's closure reads a little below 0 at times (seen in the graph test at CI): neither
    the hold at that measured position nor a command that starts from it may leave the limits."""
    gripper = ROBOT_JOINTS.index("right_gripper_joint")
    measured = np.zeros(14)
    measured[gripper] = -0.03
    controller.on_joint_state(measured, 0)
    held = controller.tick(300 * MS)  # no chunk yet: the watchdog holds at the measured position
    assert controller.status.holding and held[gripper] == 0.0
    assert controller.safety.report.clamped_position == 1
    fresh = CommandController(controller.safety, rate_hz=100.0, watchdog_s=0.2, blend_s=0.0)
    fresh.on_joint_state(measured, 0)  # the first command of a chunk starts from the measured position
    fresh.set_enabled(True)
    fresh.on_chunk(np.stack([measured] * 16), stamp_ns=0, step_s=0.01, now_ns=0)
    command = fresh.tick(0)
    assert not fresh.status.holding and command[gripper] == 0.0
    limits = controller.safety.limits
    assert ((held >= limits.lower) & (held <= limits.upper)).all() and ((command >= limits.lower) & (command <= limits.upper)).all()


def test_nan_wrong_shape_and_out_of_order_chunks_are_rejected_and_the_loop_goes_on(controller):
    good = ramp(np.zeros(14), 0.0)
    assert controller.on_chunk(good, stamp_ns=10, step_s=0.01, now_ns=0) is None
    assert "NaN" in controller.on_chunk(np.full((16, 14), np.nan), stamp_ns=20, step_s=0.01, now_ns=0)
    assert "shape" in controller.on_chunk(np.zeros((16, 7)), stamp_ns=20, step_s=0.01, now_ns=0)
    assert "out of order" in controller.on_chunk(good, stamp_ns=5, step_s=0.01, now_ns=0)
    assert controller.on_chunk(good, stamp_ns=10, step_s=0.01, now_ns=0) is None  # the same observation again
    assert controller.status.chunks_rejected == 3 and controller.status.chunks_accepted == 1
    assert controller.status.chunks_duplicate == 1
    assert np.isfinite(controller.tick(1 * MS)).all()


def test_watchdog_holds_the_measured_position_when_actions_go_stale(controller):
    controller.on_chunk(ramp(np.zeros(14), 0.001, 100), stamp_ns=0, step_s=0.01, now_ns=0)
    controller.on_joint_state(np.full(14, 0.002), 150 * MS)
    moving = controller.tick(150 * MS)
    assert not controller.status.holding and moving[0] > 0
    held = controller.tick(250 * MS)  # the chunk arrived 250 ms ago > 200 ms watchdog
    assert controller.status.holding and controller.status.reason == "actions stale"
    np.testing.assert_allclose(held, np.full(14, 0.002))
    controller.on_joint_state(np.full(14, 0.003), 400 * MS)
    np.testing.assert_allclose(controller.tick(400 * MS), held)  # still the same hold
    assert controller.status.holds["actions stale"] == 2


def test_stale_joint_states_and_exhausted_chunks_hold_too(controller):
    controller.on_chunk(ramp(np.zeros(14), 0.0, 4), stamp_ns=0, step_s=0.01, now_ns=0)
    controller.tick(10 * MS)
    controller.tick(50 * MS)
    assert controller.status.reason == "action chunk exhausted"
    controller.on_chunk(ramp(np.zeros(14), 0.0, 40), stamp_ns=60 * MS, step_s=0.01, now_ns=60 * MS)
    controller.tick(250 * MS)
    assert controller.status.reason == "joint states stale"


def test_emergency_stop_latches_until_enabled_again(controller):
    controller.on_chunk(ramp(np.zeros(14), 0.001, 100), stamp_ns=0, step_s=0.01, now_ns=0)
    controller.tick(10 * MS)
    controller.emergency_stop()
    controller.on_chunk(ramp(np.zeros(14), 0.001, 100), stamp_ns=20 * MS, step_s=0.01, now_ns=20 * MS)
    controller.tick(30 * MS)
    assert controller.status.reason == "emergency stop"
    controller.set_enabled(True)
    controller.tick(40 * MS)
    assert controller.status.reason == "no action chunk yet"  # only chunks after re-enabling are followed


def test_a_newer_chunk_blends_in():
    limits = load_joint_limits(ROBOT_JOINTS)
    c = CommandController(SafetyFilter(limits, rate_hz=100.0), rate_hz=100.0, blend_s=0.1, enabled=True)
    c.on_joint_state(np.zeros(14), 0)
    c.on_chunk(np.zeros((50, 14)), stamp_ns=0, step_s=0.01, now_ns=0)
    c.tick(0)
    c.on_chunk(np.full((50, 14), 0.01), stamp_ns=10 * MS, step_s=0.01, now_ns=10 * MS)
    c.tick(10 * MS)  # the newer chunk takes over here: the blend starts
    halfway = c.tick(60 * MS)
    np.testing.assert_allclose(halfway, np.full(14, 0.005), atol=1e-9)
    np.testing.assert_allclose(c.tick(120 * MS), np.full(14, 0.01), atol=1e-9)


def test_a_chunk_is_followed_for_its_committed_steps_before_a_newer_one_takes_over():
    limits = load_joint_limits(ROBOT_JOINTS)
    c = CommandController(SafetyFilter(limits, rate_hz=100.0), rate_hz=100.0, blend_s=0.0, commit_steps=8,
                          enabled=True)
    c.on_joint_state(np.zeros(14), 0)
    c.on_chunk(ramp(np.zeros(14), 0.001, 16), stamp_ns=0, step_s=0.01, now_ns=0)
    c.tick(0)
    for k in range(1, 12):  # a newer chunk every tick (100 Hz inference), each starting from 0.5
        now = k * 10 * MS
        c.on_joint_state(np.zeros(14), now)
        c.on_chunk(np.full((16, 14), 0.5), stamp_ns=now, step_s=0.01, now_ns=now)
        command = c.tick(now)
        if k < 8:  # committed to the first chunk for 8 steps of 10 ms
            np.testing.assert_allclose(command, np.full(14, 0.001 * k))
    assert command[0] > 0.008 + 1e-9  # from 80 ms on, the newest chunk (0.5) is followed, velocity-limited


def test_an_extra_tick_between_regular_ones_cannot_exceed_the_velocity_limit(controller):
    controller.on_chunk(np.full((16, 14), 1.0), stamp_ns=0, step_s=0.01, now_ns=0)
    first = controller.tick(0)
    second = controller.tick(2 * MS)  # 2 ms later: at most 2 ms worth of motion
    assert (np.abs(second - first) <= controller.safety.limits.max_velocity * 0.002 + 1e-12).all()


def test_while_disabled_nothing_is_sent_and_enabling_starts_from_the_measured_position(controller):
    controller.on_chunk(ramp(np.zeros(14), 0.001, 100), stamp_ns=0, step_s=0.01, now_ns=0)
    controller.tick(10 * MS)
    controller.set_enabled(False)
    assert controller.tick(20 * MS) is None and controller.status.reason == "disabled"
    controller.on_joint_state(np.full(14, 0.3), 30 * MS)  # the arm was moved (or the simulation reset)
    controller.set_enabled(True)
    controller.on_chunk(np.full((16, 14), 0.3), stamp_ns=40 * MS, step_s=0.01, now_ns=40 * MS)
    np.testing.assert_allclose(controller.tick(40 * MS), np.full(14, 0.3))  # no jump back to the old command


def test_latencies_are_measured_from_the_observation_stamp(controller):
    stamp = 1000 * MS
    controller.on_joint_state(np.zeros(14), stamp)
    assert controller.on_chunk(ramp(np.zeros(14), 0.001), stamp, 0.1, stamp + 5 * MS) is None
    controller.tick(stamp + 7 * MS)  # the first command from this chunk
    assert controller.arrival_latency.summary(stamp + 7 * MS)["max"] == pytest.approx(5.0)
    assert controller.switch_latency.summary(stamp + 7 * MS)["max"] == pytest.approx(7.0)
    controller.tick(stamp + 17 * MS)  # following the same chunk is not a second switch
    assert controller.switch_latency.summary(stamp + 17 * MS)["n"] == 1


def test_after_enabling_only_plans_from_newer_observations_are_followed(controller):
    controller.set_enabled(False)
    controller.set_enabled(True, now_ns=100 * MS)
    controller.on_joint_state(np.zeros(14), 100 * MS)
    # planned from an observation before enabling (before a reset, say), arriving after it: ignored
    assert controller.on_chunk(np.full((16, 14), 0.5), stamp_ns=95 * MS, step_s=0.01, now_ns=101 * MS) is None
    assert controller.status.chunks_before_enable == 1
    controller.tick(102 * MS)
    assert controller.status.reason == "no action chunk yet"
    controller.on_chunk(ramp(np.zeros(14), 0.001), stamp_ns=102 * MS, step_s=0.01, now_ns=104 * MS)
    assert controller.tick(104 * MS) is not None and not controller.status.holding
