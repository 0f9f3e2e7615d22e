import numpy as np
import pytest

from dbp_control.core.latency import LatencyWindow

MS = 1_000_000


def test_percentiles_cover_only_the_window():
    window = LatencyWindow(10_000 * MS)
    window.add(0, 500 * MS)  # a start-up outlier, 20 s before the end
    for k in range(100):
        window.add(10_000 * MS + k * 100 * MS, (k % 10 + 1) * MS)
    summary = window.summary(20_000 * MS)
    assert summary["n"] == 100 and summary["max"] == 10.0  # the outlier has left the window
    assert summary["p50"] == pytest.approx(np.percentile([(k % 10 + 1) for k in range(100)], 50))
    assert window.summary(40_000 * MS) is None  # everything aged out


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="latency window must be positive"):
        LatencyWindow(0)


def test_a_long_window_keeps_every_sample_in_it_across_compactions():
    window = LatencyWindow(1_000 * MS, capacity=4)  # tiny, so the arrays are compacted and grown many times
    durations = np.random.default_rng(0).integers(1, 50, 5000) * MS
    for k, d in enumerate(durations):
        window.add(k * MS, int(d))  # one sample per millisecond for 5 s
        if k % 997 == 0:
            expected = durations[max(0, k - 1000) : k + 1] / 1e6  # samples taken at most 1 s before
            np.testing.assert_array_equal(window.recent_ms(k * MS), expected)
    summary = window.summary(4999 * MS)
    assert summary["n"] == window.count(4999 * MS) == 1001
    assert summary["p99"] == pytest.approx(np.percentile(durations[-1001:] / 1e6, 99))
