"""Start one node on the Zenoh backend and spin it until SIGINT / SIGTERM."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dbp_control.middleware.port import Node, PortError
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


def run_node(name: str, build: Callable[[Node], object], *, parameters_files: Sequence[Path] = (),
             overrides: Mapping[str, Any] | None = None, endpoint: str | None = None, distro: str = "humble",
             duration_s: float | None = None) -> object:
    """Build the node's logic on a Zenoh node and spin; returns the logic object after shutdown."""
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s %(message)s")
    node = ZenohNode(name, endpoint=endpoint, distro=distro, parameters_files=parameters_files,
                     overrides=overrides)
    try:
        logic = build(node)
        previous = {sig: signal.signal(sig, lambda *_: node.executor.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
        if duration_s is not None:
            node.timer(duration_s, node.executor.stop)
        try:
            node.spin()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return logic
    finally:
        node.shutdown()
