"""Approximate-time synchronisation with the semantics of message_filters' Python
ApproximateTimeSynchronizer (ROS 2 Humble and Jazzy), without ROS.

The live observation node and the dataset compiler both use this class, so training data is
synchronised exactly as the robot's inputs will be. The rules, as in message_filters:
- each input keeps a queue keyed by stamp: a message with a stamp already queued replaces it, and a
  queue longer than `queue_size` drops its OLDEST STAMP (which may be the message just pushed);
- when a message arrives on input i, every other input's queued stamps within `slop` of it (inclusive)
  are candidates, tried closest first, in itertools.product order;
- the first combination whose spread (max - min stamp) is strictly below `slop` is emitted in input
  order and removed from the queues; nothing else is dropped.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

NS_PER_S = 1_000_000_000
# The observation node's and the dataset compiler's defaults: 10 queued messages cover 80 ms of joint
# states at 125 Hz; a 25 ms slop matches free-running 30 Hz cameras (their frames are at most half a
# period, 16.7 ms, from each other's nearest) with the joint state between them.
DEFAULT_QUEUE_SIZE = 10
DEFAULT_SLOP_S = 0.025


@dataclass
class SyncStats:
    pushed: int = 0
    matched: int = 0  # emitted sets
    replaced: int = 0  # queued messages overwritten by a later one with the same stamp
    evicted: int = 0  # messages dropped because their queue was full (oldest stamp first)


class ApproximateTimeSync:
    def __init__(self, n_inputs: int, queue_size: int, slop: float) -> None:
        if n_inputs < 1:
            raise ValueError(f"ApproximateTimeSync needs at least one input, got n_inputs={n_inputs}")
        if queue_size < 1:
            raise ValueError(f"ApproximateTimeSync queue_size must be >= 1, got {queue_size}")
        if not slop >= 0:
            raise ValueError(f"ApproximateTimeSync slop must be a non-negative number of seconds, got {slop}")
        self.n_inputs = n_inputs
        self.queue_size = queue_size
        self.slop_ns = int(slop * NS_PER_S)  # the conversion rclpy's Duration(seconds=slop) makes
        self.stats = SyncStats()
        self._queues: list[dict[int, Any]] = [{} for _ in range(n_inputs)]
        self._lock = threading.Lock()  # subscriptions may push from several executor threads

    def push(self, input_index: int, stamp_ns: int, msg: Any) -> tuple[Any, ...] | None:
        """Add `msg` stamped `stamp_ns` (integer nanoseconds) on input `input_index`; return the
        matched messages in input order, or None."""
        if not 0 <= input_index < self.n_inputs:
            raise IndexError(f"input_index {input_index} out of range for {self.n_inputs} inputs")
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int):
            raise TypeError(f"stamp_ns must be integer nanoseconds, got {type(stamp_ns).__name__}")
        if stamp_ns < 0:
            raise ValueError(f"stamp_ns must be non-negative, got {stamp_ns}")
        with self._lock:
            self.stats.pushed += 1
            queue = self._queues[input_index]
            if stamp_ns in queue:
                self.stats.replaced += 1
            queue[stamp_ns] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
                self.stats.evicted += 1

            candidates: list[list[int]] = []
            for index, other in enumerate(self._queues):
                if index == input_index:
                    continue
                near = sorted((s for s in other if abs(s - stamp_ns) <= self.slop_ns), key=lambda s: abs(s - stamp_ns))
                if not near:
                    return None
                candidates.append(near)
            for combination in itertools.product(*candidates):
                stamps = list(combination)
                stamps.insert(input_index, stamp_ns)
                pairs = list(zip(self._queues, stamps))
                # the pushed message itself may have been evicted as its queue's oldest stamp
                if max(stamps) - min(stamps) < self.slop_ns and all(s in q for q, s in pairs):
                    matched = tuple(q.pop(s) for q, s in pairs)
                    self.stats.matched += 1
                    return matched
            return None

    def queued(self) -> list[int]:
        """How many messages wait in each input's queue."""
        with self._lock:
            return [len(q) for q in self._queues]
