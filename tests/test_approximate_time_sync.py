"""ApproximateTimeSync: cases reproduced from message_filters' test_approxsync.py, edge cases of the
Python implementation's rules, and (where ROS 2 is installed) a comparison with message_filters itself."""

import random

import pytest

from dbp_control import ApproximateTimeSync

S = 1_000_000_000  # ns per second
MS = 1_000_000


class Msg:
    def __init__(self, stamp_ns: int, data: object) -> None:
        self.stamp_ns, self.data = stamp_ns, data

    def __repr__(self) -> str:
        return f"Msg({self.stamp_ns}, {self.data})"


def test_message_filters_pairs_case():
    """test_approx, part 1: queue 1, slop 0.1 s, equal stamps: each pair is emitted on its second message."""
    sync = ApproximateTimeSync(2, 1, 0.1)
    for t in range(10):
        m0, m1 = Msg(t * S, 33), Msg(t * S, 34)
        assert sync.push(0, m0.stamp_ns, m0) is None
        assert sync.push(1, m1.stamp_ns, m1) == (m0, m1)


def test_message_filters_scrambled_sequences_case():
    """test_approx, part 2: sequences of length N pushed in random order recombine into their pairs."""
    random.seed(0)
    for n in range(1, 10):
        seq0 = [Msg(t * S, random.random()) for t in range(n)]
        seq1 = [Msg(t * S, random.random()) for t in range(n)]
        sync = ApproximateTimeSync(2, n, 0.1)
        out = [sync.push(0, m.stamp_ns, m) for m in random.sample(seq0, n)]
        assert out == [None] * n
        out = [sync.push(1, m.stamp_ns, m) for m in random.sample(seq1, n)]
        assert set(out) == set(zip(seq0, seq1))
        assert sync.queued() == [0, 0]


def test_candidates_within_slop_are_inclusive_but_the_spread_must_be_strictly_below_it():
    sync = ApproximateTimeSync(2, 10, 0.1)
    sync.push(0, 1 * S, "a")
    assert sync.push(1, 1 * S + 100 * MS, "b") is None  # exactly slop apart: never emitted
    assert sync.push(1, 1 * S + 100 * MS - 1, "c") == ("a", "c")
    assert sync.queued() == [0, 1]  # "b" stays queued: nothing but the match is removed


def test_the_closest_candidates_are_tried_first_in_product_order():
    sync = ApproximateTimeSync(3, 10, 0.1)
    sync.push(1, 1050 * MS, "far")  # 50 ms from the probe
    sync.push(1, 930 * MS, "farther")  # 70 ms
    sync.push(2, 950 * MS, "c")
    # (far, c) spans 950..1050 = exactly slop, rejected; (farther, c) spans 930..1000 = 70 ms, taken
    assert sync.push(0, 1000 * MS, "probe") == ("probe", "farther", "c")
    assert sync.queued() == [0, 1, 0]


def test_among_valid_combinations_the_first_in_closeness_order_wins():
    sync = ApproximateTimeSync(2, 10, 0.1)
    sync.push(1, 950 * MS, "older")
    sync.push(1, 1020 * MS, "closer")
    assert sync.push(0, 1000 * MS, "probe") == ("probe", "closer")


def test_a_full_queue_drops_its_oldest_stamp_even_when_that_is_the_new_message():
    sync = ApproximateTimeSync(2, 2, 0.05)
    sync.push(0, 2 * S, "a2")
    sync.push(0, 3 * S, "a3")
    assert sync.push(0, 1 * S, "a1 late") is None  # out of order into a full queue: evicted at once
    assert sync.stats.evicted == 1
    assert sync.push(1, 1 * S, "b1") is None  # its partner is gone
    assert sync.push(1, 2 * S, "b2") == ("a2", "b2")


def test_a_second_message_with_the_same_stamp_replaces_the_first():
    sync = ApproximateTimeSync(2, 5, 0.01)
    sync.push(0, 5 * S, "old")
    sync.push(0, 5 * S, "new")
    assert sync.stats.replaced == 1
    assert sync.push(1, 5 * S, "b") == ("new", "b")


def test_cameras_and_joint_states_at_their_own_rates_all_match():
    """Three 30 Hz cameras with a few ms of jitter and 125 Hz joint states, slop 10 ms: every frame
    triplet is matched, together, with a joint state stamped within the slop of the frame."""
    rng = random.Random(1)
    sync = ApproximateTimeSync(4, 10, 0.010)
    events = []
    for frame in range(60):
        t = S + frame * S // 30  # start at 1 s: stamps are non-negative
        for cam in range(3):
            events.append((t + rng.randint(-2, 2) * MS, cam, f"cam{cam}-{frame}"))
    for k in range(int(2 * 125)):
        events.append((S + k * 8 * MS, 3, f"joints-{k}"))
    matches = []
    for stamp, index, msg in sorted(events):
        out = sync.push(index, stamp, msg)
        if out is not None:
            matches.append(out)
    assert len(matches) == 60
    assert [m[0] for m in matches] == [f"cam0-{f}" for f in range(60)]
    for cam0, cam1, cam2, joints in matches:
        frame = int(cam0.split("-")[1])
        assert cam1 == f"cam1-{frame}" and cam2 == f"cam2-{frame}"
        joint_ns = int(joints.split("-")[1]) * 8 * MS
        assert abs(joint_ns - frame * S // 30) <= 12 * MS  # slop plus the 2 ms camera jitter


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least one input"):
        ApproximateTimeSync(0, 1, 0.1)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSync(2, 0, 0.1)
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSync(2, 1, float("nan"))
    sync = ApproximateTimeSync(2, 1, 0.1)
    with pytest.raises(IndexError, match="input_index 2 out of range"):
        sync.push(2, 0, "x")
    with pytest.raises(TypeError, match="integer nanoseconds"):
        sync.push(0, 1.5, "x")
    with pytest.raises(ValueError, match="non-negative"):
        sync.push(0, -1, "x")


def test_matches_message_filters_on_random_streams():
    """Where ROS 2 is installed: feed identical random streams to message_filters and to this class."""
    message_filters = pytest.importorskip("message_filters")
    from rclpy.time import Time

    class Header:
        def __init__(self, ns):
            self.stamp = Time(nanoseconds=ns)

    class Stamped:
        def __init__(self, ns, data):
            self.header, self.data = Header(ns), data

    rng = random.Random(7)
    for trial in range(20):
        n_inputs, queue_size, slop = rng.randint(2, 4), rng.randint(1, 6), rng.choice([0.005, 0.02, 0.05])
        inputs = [message_filters.SimpleFilter() for _ in range(n_inputs)]
        theirs = message_filters.ApproximateTimeSynchronizer(inputs, queue_size, slop)
        got: list[tuple] = []
        theirs.registerCallback(lambda *msgs, got=got: got.append(tuple(m.data for m in msgs)))
        ours = ApproximateTimeSync(n_inputs, queue_size, slop)
        for k in range(300):
            index, ns = rng.randrange(n_inputs), rng.randint(0, 2000) * MS // 10
            msg = Stamped(ns, (trial, k))
            before = len(got)
            inputs[index].signalMessage(msg)
            out = ours.push(index, ns, msg)
            assert (None if len(got) == before else got[-1]) == (None if out is None else tuple(m.data for m in out))
