"""The graph description, the launch files and the node parameters agree (launch itself cannot be
imported here, so the files are checked as text and through the graph module they call)."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from dbp_control.nodes import NODE_CLASSES, node_class
from dbp_control.nodes.graph import GraphError, load_graph, mode_nodes

ROOT = Path(__file__).resolve().parents[1]


def node_defaults(name):
    import importlib

    return importlib.import_module(node_class(name).__module__).DEFAULTS


def test_every_mode_names_existing_nodes_executables_and_parameter_files():
    graph = load_graph()
    setup = (ROOT / "setup.py").read_text()
    for mode in graph["modes"]:
        for node in mode_nodes(mode):
            assert node.executable in NODE_CLASSES
            assert re.search(rf'"{node.executable}"', setup), f"{node.executable} is not a console script"
            assert all(p.is_file() for p in node.parameter_files)


def test_every_parameter_in_the_config_files_is_declared_with_its_type():
    for path in [*(ROOT / "config").glob("*.yaml"), *(ROOT / "config" / "modes").glob("*.yaml")]:
        if path.name == "graph.yaml":
            continue
        executable = path.stem if path.parent.name == "config" else None
        for node, section in yaml.safe_load(path.read_text()).items():
            kind = executable or load_graph()["nodes"][node]["executable"]  # mode files name node instances
            defaults = node_defaults(kind)
            for name, value in section["ros__parameters"].items():
                assert name in defaults, f"{path.name}: {node} declares no parameter {name!r}"
                expected = type(defaults[name])
                assert isinstance(value, expected) or (expected is float and isinstance(value, int)), (path.name, name)


def test_launch_files_build_their_nodes_from_a_mode_of_the_graph():
    graph = load_graph()
    files = sorted((ROOT / "launch").glob("*.launch.py"))
    assert [f.name for f in files] == [f"{mode}.launch.py" for mode in sorted(graph["modes"])]
    for path in files:
        tree = ast.parse(path.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "launch_description"]
        assert calls and calls[0].args[0].value == path.name.removesuffix(".launch.py")
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_a_bad_mode_is_named():
    with pytest.raises(GraphError, match="unknown mode 'dance'"):
        mode_nodes("dance")


def test_the_launch_helper_builds_nodes_from_the_graph():
    source = (ROOT / "dbp_control" / "nodes" / "ros_launch.py").read_text()
    assert "mode_nodes(mode, config)" in source and "executable=node.executable, name=node.name" in source
    robot = {n.name: n for n in mode_nodes("robot")}
    assert robot["head_camera"].executable == "camera" and robot["head_camera"].parameter_files[0].name == "camera.yaml"
