"""config/graph.yaml: which nodes a mode runs and with which parameter files. Read by `dbp launch` and
by the ros2 launch files (this module imports neither ROS nor Zenoh)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from dbp_control.core.paths import CONFIG_DIR


class GraphError(ValueError):
    """A graph description that names something that does not exist."""


@dataclass(frozen=True)
class NodeLaunch:
    name: str
    executable: str
    parameter_files: tuple[Path, ...]


def load_graph(path: Path = CONFIG_DIR / "graph.yaml") -> dict:
    if not Path(path).is_file():
        raise GraphError(f"no graph description at {path}")
    return yaml.safe_load(Path(path).read_text())


def mode_nodes(mode: str, config_dir: Path = CONFIG_DIR) -> list[NodeLaunch]:
    graph = load_graph(config_dir / "graph.yaml")
    if mode not in graph["modes"]:
        raise GraphError(f"unknown mode {mode!r}; modes: {sorted(graph['modes'])}")
    spec = graph["modes"][mode]
    extra = [config_dir / f for f in spec.get("parameters", [])]
    missing = [str(f) for f in extra if not f.is_file()]
    if missing:
        raise GraphError(f"mode {mode!r} names parameter files that do not exist: {missing}")
    out = []
    for name in spec["nodes"]:
        if name not in graph["nodes"]:
            raise GraphError(f"mode {mode!r} runs node {name!r}, which graph.yaml does not define")
        executable = graph["nodes"][name]["executable"]
        own = config_dir / f"{executable}.yaml"
        out.append(NodeLaunch(name, executable, tuple(([own] if own.is_file() else []) + extra)))
    return out
