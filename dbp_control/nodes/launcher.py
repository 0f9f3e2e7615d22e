"""`dbp launch MODE`: the mode's nodes from config/graph.yaml, each as a process over Zenoh, meeting at a
router this launcher hosts. If a node exits, the others are stopped and its name and exit code reported."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping, Sequence

from dbp_control.middleware.zenoh_backend import DEFAULT_ENDPOINT
from dbp_control.nodes.graph import mode_nodes
from dbp_control.nodes.processes import NodeProcesses
from dbp_control.nodes.runner import stop_on_signals


def mode_arguments(mode: str, overrides: Mapping[str, Sequence[str]] | None = None,
                   distro: str = "humble") -> dict[str, list[str]]:
    """The `dbp node` arguments of each node of `mode` (config/graph.yaml), with `overrides`:
    {node: ["NAME=VALUE", ...]} on top of its parameter files."""
    nodes = mode_nodes(mode)
    unknown = sorted(set(overrides or {}) - {n.name for n in nodes})
    if unknown:
        raise ValueError(f"--set names node(s) {unknown} that mode {mode!r} does not run")
    return {
        node.name: [node.executable, "--name", node.name, "--distro", distro,
                    *(a for path in node.parameter_files for a in ("--params", str(path))),
                    *(a for pair in (overrides or {}).get(node.name, []) for a in ("--set", pair))]
        for node in nodes
    }


def launch(mode: str, *, endpoint: str = DEFAULT_ENDPOINT, overrides: Mapping[str, Sequence[str]] | None = None,
           duration_s: float | None = None, distro: str = "humble") -> int:
    arguments = mode_arguments(mode, overrides, distro)
    stop = threading.Event()
    with stop_on_signals(stop), NodeProcesses(arguments, endpoint=endpoint) as graph:
        print(f"dbp launch {mode}: {', '.join(graph.processes)} on {endpoint}", flush=True)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            for name, process in graph.processes.items():
                if process.poll() is not None:
                    print(f"dbp launch {mode}: node {name} exited with code {process.returncode}; "
                          "stopping the others", file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.1)
    return 0
