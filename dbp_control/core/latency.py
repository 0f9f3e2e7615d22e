"""Latency statistics over a sliding time window (the nodes' status reports them)."""

from __future__ import annotations

import numpy as np


class LatencyWindow:
    """Durations in nanoseconds (an observation stamp to an event, or a computation's time) kept with the
    time they were taken; percentiles over the last `window_ns`, so a reader sees the recent state of a
    running node and not its start-up.

    Samples live in numpy arrays (a sliding slice, compacted when it reaches the end), so a summary over
    tens of thousands of samples costs a fraction of a millisecond: status reports run on the same
    executor as the control loop, and a Python-level pass over a long window held it up for milliseconds."""

    def __init__(self, window_ns: int, capacity: int = 1024) -> None:
        if window_ns <= 0:
            raise ValueError(f"latency window must be positive, got {window_ns} ns")
        self.window_ns = window_ns
        self._times = np.empty(capacity, np.int64)  # when each sample was taken, in the order added
        self._durations = np.empty(capacity, np.int64)
        self._start = self._end = 0  # the live samples are [_start, _end)

    def _prune(self, now_ns: int) -> None:
        live = self._times[self._start : self._end]
        self._start += int(np.searchsorted(live, now_ns - self.window_ns, side="left"))

    def add(self, now_ns: int, duration_ns: int) -> None:
        if self._end == len(self._times):
            live = self._end - self._start
            size = len(self._times) * 2 if live * 2 > len(self._times) else len(self._times)
            times, durations = np.empty(size, np.int64), np.empty(size, np.int64)
            times[:live], durations[:live] = self._times[self._start : self._end], self._durations[self._start : self._end]
            self._times, self._durations, self._start, self._end = times, durations, 0, live
        self._times[self._end], self._durations[self._end] = now_ns, duration_ns
        self._end += 1
        self._prune(now_ns)

    def count(self, now_ns: int) -> int:
        self._prune(now_ns)
        return self._end - self._start

    def recent_ms(self, now_ns: int) -> np.ndarray:
        self._prune(now_ns)
        return self._durations[self._start : self._end] / 1e6

    def summary(self, now_ns: int) -> dict[str, float] | None:
        """{"n", "p50", "p99", "max"} (milliseconds) over the window, or None without samples."""
        recent = self.recent_ms(now_ns)
        if not len(recent):
            return None
        p50, p99 = np.percentile(recent, [50, 99])
        return {"n": len(recent), "p50": float(p50), "p99": float(p99), "max": float(recent.max())}
