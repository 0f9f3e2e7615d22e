"""Thin nodes: each builds core objects from its parameters, wires channels through the middleware
port, and spins. `dbp_control.nodes.runner` starts one on a chosen backend."""
