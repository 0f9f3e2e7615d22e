"""Thin nodes: each builds core objects from its parameters, wires channels through the middleware
port, and spins. NODES maps each node's name to its logic class; `dbp node NAME` runs one over Zenoh."""

from __future__ import annotations

from importlib import import_module

NODE_CLASSES = {
    "sim_robot": "dbp_control.nodes.sim_robot:SimRobot",
    "policy": "dbp_control.nodes.policy:PolicyNode",
    "dual_arm_command": "dbp_control.nodes.command:DualArmCommand",
    "recorder": "dbp_control.nodes.recorder:Recorder",
    "camera": "dbp_control.nodes.camera:RealSenseCamera",
}


def node_class(name: str) -> type:
    if name not in NODE_CLASSES:
        raise KeyError(f"unknown node {name!r}; nodes: {sorted(NODE_CLASSES)}")
    module, cls = NODE_CLASSES[name].split(":")
    return getattr(import_module(module), cls)
