"""Nodes as processes (`dbp launch`, the demo, the benchmarks): a Zenoh router (on a free local port unless
an endpoint is given), each node a `dbp node` process, and optionally a probe node in this process that
keeps the latest JSON of each status topic."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from dbp_control.core.channels import CHANNELS
from dbp_control.middleware.zenoh_backend import ZenohNode, open_router


STOP_REPORT_S = 5.0  # a node still running this long after SIGTERM gets its threads' states printed
STOP_KILL_S = 20.0  # and is killed this long after it


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp/127.0.0.1:{s.getsockname()[1]}"


class NodeProcesses:
    def __init__(self, nodes: Mapping[str, Sequence[str]], statuses: Mapping[str, str] | None = None, *,
                 endpoint: str | None = None) -> None:
        """`nodes`: name -> `dbp node` arguments (executable first); `statuses`: key -> status channel name
        (none: no probe)."""
        self.nodes, self.statuses, self.endpoint = nodes, statuses or {}, endpoint
        self.probe: ZenohNode | None = None
        self.latest: dict[str, dict[str, Any]] = {}
        self.processes: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> NodeProcesses:
        self.endpoint = self.endpoint or free_endpoint()
        self.router = open_router(self.endpoint)
        for name, args in self.nodes.items():
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "dbp_control.cli.main", "node", *args, "--endpoint", self.endpoint])
        if self.statuses:
            self.probe = ZenohNode("probe", endpoint=self.endpoint)
            for key, channel in self.statuses.items():
                self.probe.subscribe(CHANNELS[channel],
                                     lambda msg, key=key: self.latest.__setitem__(key, json.loads(msg.data)))
            threading.Thread(target=self.probe.spin, daemon=True).start()
        return self

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"node {name} exited with code {process.returncode}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for process in self.processes.values():
            process.terminate()
        deadline = time.monotonic() + STOP_REPORT_S
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # what its threads do now tells starvation from a deadlock
                print(f"node {name} (pid {process.pid}) still running {STOP_REPORT_S:g} s after SIGTERM; its "
                      f"threads:\n{thread_states(process.pid)}", file=sys.stderr, flush=True)
        deadline += STOP_KILL_S - STOP_REPORT_S
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                print(f"node {name} (pid {process.pid}) killed: still running {STOP_KILL_S:g} s after SIGTERM",
                      file=sys.stderr, flush=True)
            else:
                if process.returncode:
                    print(f"node {name} (pid {process.pid}) exited with status {process.returncode} on its stop",
                          file=sys.stderr, flush=True)
        if self.probe is not None:
            self.probe.shutdown()
        self.router.close()


def thread_states(pid: int) -> str:
    """A line per thread of `pid` from /proc: name, state (R running, S sleeping, D uninterruptible), scheduling
    policy (0 normal, 1 SCHED_FIFO), real-time priority and CPU ticks, to tell a deadlock (all asleep) from
    starvation (runnable, no ticks gained)."""
    try:
        tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError:
        return "  (the process has exited meanwhile)"
    lines = []
    for tid in tids:
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        lines.append(f"  {tid} {name}: state {fields[0]}, policy {fields[38]}, rt priority {fields[37]}, "
                     f"cpu ticks {int(fields[11]) + int(fields[12])}")
    return "\n".join(lines)
