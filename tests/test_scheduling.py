"""Real-time scheduling of node processes: every thread but the excluded workers under SCHED_FIFO, all or
none, and a refusal logged with the remedy."""

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from dbp_control.nodes.scheduling import use_realtime_priority


def run_child(code: str) -> subprocess.CompletedProcess:
    """In a child process: this test process must keep its own scheduling."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


def test_every_thread_but_the_excluded_one_runs_under_fifo():
    result = run_child("""
        import logging, os, threading
        from dbp_control.nodes.scheduling import use_realtime_priority
        stop = threading.Event()
        worker, helper = (threading.Thread(target=stop.wait) for _ in range(2))
        worker.start(); helper.start()
        got = use_realtime_priority(20, logging.getLogger("t"), exclude=[worker.native_id])
        policies = {t.name: os.sched_getscheduler(t.native_id) for t in (worker, helper)}
        print(got, os.sched_getscheduler(0) == os.SCHED_FIFO, policies[helper.name] == os.SCHED_FIFO,
              policies[worker.name] == os.SCHED_OTHER, os.sched_getparam(0).sched_priority)
        stop.set()
    """)
    if "refused" in result.stderr:
        pytest.skip("this machine refuses SCHED_FIFO (no CAP_SYS_NICE / rtprio limit)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["20", "True", "True", "True", "20"]


def test_a_refusal_leaves_normal_scheduling_and_says_how_to_allow_it(monkeypatch, caplog):
    calls = []

    def refuse_second(tid, policy, param):
        calls.append(policy)
        if policy == os.SCHED_FIFO and calls.count(os.SCHED_FIFO) == 2:
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse_second)
    monkeypatch.setattr(os, "listdir", lambda path: ["101", "102", "103"])
    with caplog.at_level(logging.WARNING):
        assert use_realtime_priority(40, logging.getLogger("t")) == 0
    assert calls.count(os.SCHED_OTHER) == 3  # the thread already switched goes back too
    assert "realtime_priority 40 refused" in caplog.text and "ulimit -r 40" in caplog.text


def test_priority_zero_changes_nothing_and_out_of_range_is_an_error(monkeypatch):
    monkeypatch.setattr(os, "sched_setscheduler", lambda *a: pytest.fail("scheduler changed"))
    assert use_realtime_priority(0, logging.getLogger("t")) == 0
    with pytest.raises(ValueError, match="realtime_priority must be 0 \\(off\\) or 1-99, got 120"):
        use_realtime_priority(120, logging.getLogger("t"))
