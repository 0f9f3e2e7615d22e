"""Real-time scheduling of node processes: every thread but the excluded workers under SCHED_FIFO, all or
none, and a refusal logged with the remedy; CPU affinity of the head's and the encoders' threads."""

import logging
import os
import subprocess
import sys
import textwrap
import threading

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


def test_cpu_specifications_resolve_to_a_head_core_and_encoder_cores_or_name_what_is_wrong():
    from dbp_control.core.inference.cpus import CpuError, resolve_cpus

    assert resolve_cpus("auto", "auto", (0, 1)) == ((1,), (0,))
    assert resolve_cpus("auto", "auto", (3, 0, 2)) == ((3,), (0, 2))
    assert resolve_cpus("auto", "auto", (5,)) == ((), ())  # one CPU: nothing to separate
    assert resolve_cpus("none", "", (0, 1)) == ((), ())
    assert resolve_cpus("0", "1,1", (0, 1)) == ((0,), (1,))
    with pytest.raises(CpuError, match=r"head_cpus: CPU\(s\) \[7\] are not among .*\[0, 1\]"):
        resolve_cpus("7", "auto", (0, 1))
    with pytest.raises(CpuError, match="encoder_cpus: expected 'auto', 'none' or CPU numbers"):
        resolve_cpus("auto", "first", (0, 1))


def test_a_pinned_thread_runs_only_on_its_cpus_and_other_threads_keep_theirs():
    from dbp_control.core.inference.cpus import allowed_cpus, pin_current_thread

    cpus = allowed_cpus()
    seen: dict[str, set[int]] = {}

    def pinned() -> None:
        seen["returned"] = set(pin_current_thread(cpus[-1:]))
        seen["pinned"] = os.sched_getaffinity(0)

    worker = threading.Thread(target=pinned)
    worker.start()
    worker.join()
    assert seen["pinned"] == seen["returned"] == {cpus[-1]}  # the affinity it reports is the kernel's
    assert os.sched_getaffinity(0) == set(cpus)  # affinity is per thread: this one was not moved
