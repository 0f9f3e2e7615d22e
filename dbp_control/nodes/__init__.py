"""Thin nodes: each builds core objects from its parameters, wires channels through the middleware
port, and spins. NODE_CLASSES maps each executable to its logic class; `dbp node NAME` runs one over
Zenoh. Most executables host one node, named at launch; a class with NODE_DEFAULTS hosts several nodes of
fixed names in one process (its constructor takes {name: node}), e.g. `policy`: observation + inference."""

from __future__ import annotations

from importlib import import_module
from typing import Any

NODE_CLASSES = {
    "sim_robot": "dbp_control.nodes.sim_robot:SimRobot",
    "policy": "dbp_control.nodes.policy:PolicyProcess",
    "dual_arm_command": "dbp_control.nodes.command:DualArmCommand",
    "recorder": "dbp_control.nodes.recorder:Recorder",
    "camera": "dbp_control.nodes.camera:RealSenseCamera",
}


def node_class(name: str) -> type:
    if name not in NODE_CLASSES:
        raise KeyError(f"unknown node {name!r}; nodes: {sorted(NODE_CLASSES)}")
    module, cls = NODE_CLASSES[name].split(":")
    return getattr(import_module(module), cls)


def hosted_nodes(executable: str) -> dict[str, dict[str, Any]] | None:
    """{node name: declared parameters} of an executable hosting several nodes; None for a single node."""
    return getattr(node_class(executable), "NODE_DEFAULTS", None)


def node_parameters(executable: str, node_name: str) -> dict[str, Any]:
    """The parameters (with their defaults) that node `node_name` of `executable` declares."""
    hosted = hosted_nodes(executable)
    if hosted is None:
        return import_module(node_class(executable).__module__).DEFAULTS
    if node_name not in hosted:
        raise KeyError(f"executable {executable!r} hosts nodes {sorted(hosted)}, not {node_name!r}")
    return hosted[node_name]
