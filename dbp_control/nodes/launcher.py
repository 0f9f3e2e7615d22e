"""`dbp launch MODE`: the mode's nodes from config/graph.yaml, each as a process over Zenoh, meeting at a
router this launcher hosts. If a node exits, the others are stopped and its name and exit code reported."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from dbp_control.middleware.zenoh_backend import DEFAULT_ENDPOINT, open_router
from dbp_control.nodes.graph import mode_nodes


def launch(mode: str, *, endpoint: str = DEFAULT_ENDPOINT, overrides: Mapping[str, Sequence[str]] | None = None,
           duration_s: float | None = None, distro: str = "humble", host_router: bool = True) -> int:
    nodes = mode_nodes(mode)
    unknown = sorted(set(overrides or {}) - {n.name for n in nodes})
    if unknown:
        raise ValueError(f"--set names node(s) {unknown} that mode {mode!r} does not run")
    router = open_router(endpoint) if host_router else None
    processes: dict[str, subprocess.Popen] = {}
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for node in nodes:
            cmd = [sys.executable, "-m", "dbp_control.cli.main", "node", node.executable, "--name", node.name,
                   "--endpoint", endpoint, "--distro", distro]
            for path in node.parameter_files:
                cmd += ["--params", str(path)]
            for pair in (overrides or {}).get(node.name, []):
                cmd += ["--set", pair]
            processes[node.name] = subprocess.Popen(cmd)
        print(f"dbp launch {mode}: {', '.join(processes)} on {endpoint}", flush=True)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop and (deadline is None or time.monotonic() < deadline):
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"dbp launch {mode}: node {name} exited with code {process.returncode}; stopping the others",
                          file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.1)
        return 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if router is not None:
            router.close()
