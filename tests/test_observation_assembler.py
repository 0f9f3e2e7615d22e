"""The observation node's core: freshest joint state + latest synchronised images, ages, drops, history."""

import numpy as np
import pytest

from dbp_control.core.observation.assembler import ObservationAssembler, ObservationHistory

MS = 1_000_000
CAMS = ("left_wrist", "right_wrist", "head")


def feed(assembler, until_ms, *, camera_lag_ms=2):
    """Joint states every 8 ms, camera frames every 33 ms (+ lag), pushed when they are stamped."""
    events = [(t, "joints") for t in range(0, until_ms, 8)] + [(t + camera_lag_ms, "cams") for t in range(0, until_ms, 33)]
    for t, kind in sorted(events):
        if kind == "joints":
            assembler.push_joint_state(t * MS, np.full(14, t / 1000), now_ns=t * MS)
        else:
            for cam in CAMS:
                assembler.push_image(cam, t * MS, f"{cam}@{t}", now_ns=t * MS)


def test_an_observation_is_the_freshest_joint_state_with_the_latest_image_set():
    converted = []
    assembler = ObservationAssembler(CAMS, queue_size=10, slop_s=0.025,
                                     convert=lambda cam, msg: converted.append(msg) or msg.upper())
    assert assembler.observation(0) is None and assembler.stats.not_ready == 1
    feed(assembler, 200)
    obs = assembler.observation(200 * MS)
    assert obs.stamp_ns == 192 * MS and obs.state[0] == pytest.approx(0.192)
    assert obs.images.stamp_ns == 200 * MS  # frames at 33 k + 2 ms: the seventh, matched with the 192 ms joint state
    assert obs.images.frames["head"] == f"HEAD@{obs.images.stamp_ns // MS}"
    assert obs.ages_ms["joint_states"] == pytest.approx(8.0)
    assert obs.ages_ms["images"] == pytest.approx((200 * MS - obs.images.stamp_ns) / MS)
    assert len(converted) == 3 * 7  # converted once per synchronised frame: 7 sets in 200 ms


def test_stale_and_out_of_order_inputs_are_dropped_and_counted():
    assembler = ObservationAssembler((), queue_size=10, slop_s=0.025, max_age_s=0.1)
    assembler.push_joint_state(100 * MS, np.ones(14), now_ns=100 * MS)
    assembler.push_joint_state(90 * MS, np.zeros(14), now_ns=101 * MS)  # older than the last one
    assembler.push_joint_state(100 * MS, np.zeros(14), now_ns=101 * MS)  # the same stamp again
    assembler.push_joint_state(50 * MS, np.zeros(14), now_ns=300 * MS)  # 250 ms old on arrival
    stats = assembler.stats.inputs["joint_states"]
    assert (stats.received, stats.out_of_order, stats.stale) == (4, 2, 1)
    assert assembler.observation(110 * MS).state[0] == 1.0


def test_unknown_camera_is_named():
    with pytest.raises(KeyError, match="unknown camera 'tail'"):
        ObservationAssembler(CAMS, queue_size=5, slop_s=0.02).push_image("tail", 0, None, now_ns=0)


def test_history_picks_observations_a_training_step_apart():
    assembler = ObservationAssembler((), queue_size=10, slop_s=0.025)
    history = ObservationHistory(n_obs_steps=2, step_s=0.1)
    for t in range(0, 300, 10):  # a 100 Hz control loop
        assembler.push_joint_state(t * MS, np.full(14, float(t)), now_ns=t * MS)
        history.push(assembler.observation(t * MS))
    window = history.window()
    assert [o.stamp_ns // MS for o in window] == [190, 290]
    early = ObservationHistory(n_obs_steps=3, step_s=0.1)
    early.push(assembler.observation(300 * MS))
    assert [o.stamp_ns // MS for o in early.window()] == [290, 290, 290]  # padded like the training windows
    history.clear()  # the robot was re-enabled (after a reset): nothing from before may read as motion
    history.push(assembler.observation(300 * MS))
    assert [o.stamp_ns // MS for o in history.window()] == [290, 290]


def test_frames_of_another_encoding_or_size_are_rejected_with_the_reason():
    from dbp_control.core.data.bags import image_msg
    from dbp_control.core.observation.images import ImageError, decode_image

    rgb = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    msg = image_msg("humble", 0, "head", rgb)
    np.testing.assert_array_equal(decode_image(msg), rgb)
    msg.encoding = "bgr8"
    np.testing.assert_array_equal(decode_image(msg), rgb[..., ::-1])
    with pytest.raises(ImageError, match="is 48x64, expected 96x96"):
        decode_image(msg, expected_size=(96, 96))
    msg.encoding = "16UC1"
    with pytest.raises(ImageError, match="encoding '16UC1' is not supported"):
        decode_image(msg)
    msg.encoding, msg.step = "rgb8", 10
    with pytest.raises(ImageError, match="does not match"):
        decode_image(msg)
