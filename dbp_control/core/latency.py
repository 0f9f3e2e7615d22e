"""Latency statistics over a sliding time window (the nodes' status reports them)."""

from __future__ import annotations

from collections import deque

import numpy as np


class LatencyWindow:
    """Durations in nanoseconds (an observation stamp to an event, or a computation's time) kept with the
    time they were taken; percentiles over the last `window_ns`, so a reader sees the recent state of a
    running node and not its start-up."""

    def __init__(self, window_ns: int) -> None:
        if window_ns <= 0:
            raise ValueError(f"latency window must be positive, got {window_ns} ns")
        self.window_ns = window_ns
        self._samples: deque[tuple[int, int]] = deque()

    def _prune(self, now_ns: int) -> None:
        while self._samples and now_ns - self._samples[0][0] > self.window_ns:
            self._samples.popleft()

    def add(self, now_ns: int, duration_ns: int) -> None:
        self._samples.append((now_ns, duration_ns))
        self._prune(now_ns)

    def recent_ms(self, now_ns: int) -> np.ndarray:
        self._prune(now_ns)
        return np.array([d for _, d in self._samples], dtype=np.float64) / 1e6

    def summary(self, now_ns: int) -> dict[str, float] | None:
        """{"n", "p50", "p99", "max"} (milliseconds) over the window, or None without samples."""
        recent = self.recent_ms(now_ns)
        if not len(recent):
            return None
        return {"n": len(recent), "p50": float(np.percentile(recent, 50)), "p99": float(np.percentile(recent, 99)),
                "max": float(recent.max())}
