"""Real-time scheduling of a node process: under SCHED_FIFO its executor (and the middleware threads that
feed it) preempt everything else on the machine (image encoding, rendering, logging) the moment input
arrives, instead of waiting for a time slice. ros2_control runs its control thread the same way; robot
drivers do too."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection


def use_realtime_priority(priority: int, logger: logging.Logger, *, exclude: Collection[int] = ()) -> int:
    """Put every thread of this process but `exclude` (native thread ids: workers that should yield, such as
    an image encoder) under SCHED_FIFO at `priority` (1-99; 0 changes nothing). Threads started afterwards
    inherit the policy of the thread that starts them. Returns the priority in effect: 0 when the system
    refuses (no CAP_SYS_NICE or rtprio limit), which is logged with the remedy."""
    if priority == 0:
        return 0
    if not 1 <= priority <= 99:
        raise ValueError(f"realtime_priority must be 0 (off) or 1-99, got {priority}")
    threads = [int(tid) for tid in os.listdir("/proc/self/task") if int(tid) not in set(exclude)]
    try:
        for tid in threads:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError as exc:
        for tid in threads:  # all or none: a half real-time process would starve its own other half
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        logger.warning("realtime_priority %d refused (%s): running under the normal scheduler; allow it with an "
                       "rtprio limit (e.g. `ulimit -r %d`, or limits.conf) or CAP_SYS_NICE", priority, exc, priority)
        return 0
    except ProcessLookupError:  # a thread that ended meanwhile
        pass
    logger.info("%d threads under SCHED_FIFO, priority %d", len(threads), priority)
    return priority
