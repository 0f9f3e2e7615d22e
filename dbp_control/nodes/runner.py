"""Start an executable's node(s) on the Zenoh backend and spin until SIGINT / SIGTERM."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import math
import select
import signal
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dbp_control.middleware.port import PortError, spin_together
from dbp_control.middleware.zenoh_backend import ZenohNode


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`name=value` pairs, values read as YAML scalars (as `ros2 run ... -p name:=value` does)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise PortError(f"parameter override {pair!r} is not name=value")
        overrides[name] = yaml.safe_load(text)
    return overrides


def split_overrides(overrides: Mapping[str, Any], hosted: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Overrides of a process hosting several nodes, to every node that declares each (none: an error)."""
    unknown = sorted(name for name in overrides if not any(name in declared for declared in hosted.values()))
    if unknown:
        raise PortError(f"no node of this process declares parameter(s) {unknown}; "
                        + "; ".join(f"{node}: {sorted(declared)}" for node, declared in hosted.items()))
    return {node: {k: v for k, v in overrides.items() if k in declared} for node, declared in hosted.items()}


def run_node(name: str, cls: type, *, parameters_files: Sequence[Path] = (), overrides: Mapping[str, Any] | None = None,
             endpoint: str | None = None, distro: str = "humble", duration_s: float | None = None) -> object:
    """Build the executable's logic on Zenoh node(s) and spin; returns the logic object after shutdown. A
    class hosting several nodes (NODE_DEFAULTS) gets one Zenoh node per name, each spun on its own thread."""
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s %(message)s")
    hosted = getattr(cls, "NODE_DEFAULTS", None)
    given = {name: dict(overrides or {})} if hosted is None else split_overrides(overrides or {}, hosted)
    nodes: dict[str, ZenohNode] = {}
    try:
        for node_name, node_overrides in given.items():
            nodes[node_name] = ZenohNode(node_name, endpoint=endpoint, distro=distro,
                                         parameters_files=parameters_files, overrides=node_overrides)
        logic = cls(nodes[name]) if hosted is None else cls(nodes)
        stop = threading.Event()
        if duration_s is not None:
            next(iter(nodes.values())).timer(duration_s, stop.set)
        with stop_on_signals(stop), exit_if_stop_outlasts(stop, STOP_DEADLINE_S):
            spin_together(list(nodes.values()), stop)
        return logic
    finally:
        for node in reversed(list(nodes.values())):
            node.shutdown()


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
STOP_DEADLINE_S = 10.0  # how long a node's executors may take to return once stopped


@contextlib.contextmanager
def exit_if_stop_outlasts(stop: threading.Event, deadline_s: float) -> Iterator[None]:
    """Once `stop` is set, the block has `deadline_s` to finish; past that, every thread's stack is printed to
    stderr and the process exits with status 1. faulthandler's watchdog does both from a thread of its own
    that needs no GIL, so an interpreter whose main thread never gets the GIL back cannot hold it up. Nodes
    did park for good on SIGTERM (their executor's queue wait, fixed in `Executor`), and whoever supervised
    them (ros2 launch, a test) waited on a process that would never end; this bounds whatever else might."""
    if not math.isfinite(deadline_s) or deadline_s <= 0:
        raise ValueError(f"deadline_s must be a finite number > 0, got {deadline_s}")

    def arm() -> None:
        stop.wait()
        faulthandler.dump_traceback_later(deadline_s, exit=True)

    armer = threading.Thread(target=arm, name="stop-deadline", daemon=True)
    armer.start()
    try:
        yield
    finally:
        stop.set()
        armer.join()  # armed by now: cancelling after the join cannot race it
        faulthandler.cancel_dump_traceback_later()


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT / SIGTERM set `stop`, twice over: by a Python handler, which runs on the main thread when
    the interpreter gets to it, and through the wakeup fd, which the C-level handler writes on whichever
    thread the kernel picked and a watcher thread reads. A stop once went missing on the first path alone
    (a node process spun on for good after SIGTERM)."""
    receive, send = socket.socketpair()
    send.setblocking(False)  # the C handler must never block

    def watch() -> None:  # the fd carries the number of every signal with a Python handler: only these stop
        while not stop.is_set():
            if select.select([receive], [], [], 0.1)[0] and STOP_SIGNALS.intersection(receive.recv(64)):
                stop.set()

    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    previous_fd = signal.set_wakeup_fd(send.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="stop-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        receive.close()
        send.close()
