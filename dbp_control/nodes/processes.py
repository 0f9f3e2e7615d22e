"""Nodes as processes (`dbp launch`, the demo, the benchmarks): a Zenoh router (on a free local port unless
an endpoint is given), each node a `dbp node` process, and optionally a probe node in this process that
keeps the latest JSON of each status topic."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from dbp_control.core.channels import CHANNELS
from dbp_control.middleware.zenoh_backend import ZenohNode, open_router


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
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.probe is not None:
            self.probe.shutdown()
        self.router.close()
