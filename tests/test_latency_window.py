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
