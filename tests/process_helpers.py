"""Waiting on node processes and stopping them: a process that does not stop fails the test with its
output and its threads' stacks instead of outliving the test run."""

import signal
import subprocess
import time
from collections.abc import Callable

from dbp_control.nodes.processes import thread_states


def stop_process(process: subprocess.Popen, timeout_s: float = 20.0) -> str:
    """SIGTERM, then wait; a process still running after `timeout_s` is asked for its stacks (SIGUSR1:
    `dbp` registers faulthandler on it), killed, and reported with everything it printed."""
    if process.poll() is None:
        process.terminate()
    try:
        output = process.communicate(timeout=timeout_s)[0]
    except subprocess.TimeoutExpired:
        threads = thread_states(process.pid)
        process.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        process.kill()
        output = process.communicate()[0]
        raise AssertionError(f"{' '.join(map(str, process.args))} did not exit within {timeout_s:g} s of SIGTERM; "
                             f"its threads:\n{threads}\nits output and stacks:\n{output}") from None
    return output or ""


def stop_processes(processes: list[subprocess.Popen], timeout_s: float = 20.0) -> None:
    """`stop_process` on each, all of them stopped before the first failure is raised."""
    failures = []
    for process in processes:
        try:
            stop_process(process, timeout_s)
        except AssertionError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    """Poll `predicate` every 0.1 s until it holds (True) or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
