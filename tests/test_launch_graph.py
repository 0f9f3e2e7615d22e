"""The graph description, the launch files and the node parameters agree (launch itself cannot be
imported here, so the files are checked as text and through the graph module they call)."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from dbp_control.nodes import NODE_CLASSES, hosted_nodes, node_parameters
from dbp_control.nodes.graph import GraphError, load_graph, mode_nodes

ROOT = Path(__file__).resolve().parents[1]


def declared_parameters(node, executable=None):
    """The parameters `node` declares: a node of `executable`, or (in mode files) a node instance of the
    graph or a node a multi-node executable hosts."""
    if executable is None:
        instances = load_graph()["nodes"]
        executable = instances[node]["executable"] if node in instances else \
            next(e for e in NODE_CLASSES if node in (hosted_nodes(e) or {}))
    return node_parameters(executable, node)


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
            defaults = declared_parameters(node, executable)
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


def test_the_policy_process_hosts_observation_and_inference_nodes_each_with_its_parameters():
    assert sorted(hosted_nodes("policy")) == ["observation", "policy"]
    assert hosted_nodes("dual_arm_command") is None
    sections = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
    assert sorted(sections) == ["observation", "policy"]
    for node, section in sections.items():  # every declared parameter is in the file, and nothing else
        assert sorted(section["ros__parameters"]) == sorted(node_parameters("policy", node)), node
    with pytest.raises(KeyError, match="hosts nodes \\['observation', 'policy'\\], not 'inference'"):
        node_parameters("policy", "inference")


def test_overrides_of_a_multi_node_process_go_to_the_nodes_that_declare_them():
    from dbp_control.middleware.port import PortError
    from dbp_control.nodes.runner import split_overrides

    hosted = hosted_nodes("policy")
    routed = split_overrides({"slop_s": 0.03, "encoder_precision": "int8"}, hosted)
    assert routed == {"observation": {"slop_s": 0.03}, "policy": {"encoder_precision": "int8"}}
    with pytest.raises(PortError, match=r"no node of this process declares parameter\(s\) \['rate_hz'\]"):
        split_overrides({"rate_hz": 100.0}, hosted)


def test_nodes_spun_together_stop_together_and_a_failure_is_raised():
    import threading

    from dbp_control.middleware.port import spin_together

    class FakeNode:
        def __init__(self, name, fail=False):
            self.name, self.fail, self.spun = name, fail, False

        def spin(self, until):
            self.spun = True
            while not until():
                if self.fail:
                    raise RuntimeError(f"{self.name} broke")
                threading.Event().wait(0.01)

    nodes = [FakeNode("observation"), FakeNode("policy", fail=True)]
    with pytest.raises(RuntimeError, match="policy broke"):  # raised on this thread, after the first node stopped
        spin_together(nodes, threading.Event())
    assert all(n.spun for n in nodes)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    spin_together([FakeNode("a"), FakeNode("b")], stop)  # returns once stop is set


def test_a_stop_signal_reaches_the_node_even_when_the_python_handler_does_nothing():
    """The wakeup fd is the second path: the C-level handler writes it on whichever thread gets the signal."""
    import os
    import signal
    import threading
    import time

    from dbp_control.nodes.runner import stop_on_signals

    stop = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stop):
        signal.signal(signal.SIGTERM, lambda *_: None)  # the first path lost, as it once was
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.is_set()
    assert signal.getsignal(signal.SIGTERM) is before and signal.set_wakeup_fd(-1) == -1  # both restored


@pytest.mark.parametrize("block_returns", [False, True])
def test_a_node_stuck_after_its_stop_exits_with_its_stacks_and_one_that_stops_does_not(block_returns):
    """The deadline's watchdog needs no GIL; a block that ends in time cancels it (the process then outlives
    the deadline and exits 0)."""
    import subprocess
    import sys
    import time

    stuck = "threading.Event().wait()  # never returns" if not block_returns else "pass"
    code = ("import threading, time\n"
            "from dbp_control.nodes.runner import exit_if_stop_outlasts\n"
            "stop = threading.Event()\n"
            "with exit_if_stop_outlasts(stop, 0.5):\n"
            "    stop.set()\n"
            f"    {stuck}\n"
            "time.sleep(1.5)\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if block_returns:
        assert result.returncode == 0 and "Timeout" not in result.stderr, result.stderr
    else:
        assert result.returncode == 1 and time.monotonic() - started < 30
        assert "Timeout (0:00:00.500000)!" in result.stderr and 'File "<string>", line 6' in result.stderr, result.stderr


def test_the_stop_deadline_must_be_positive():
    import threading

    from dbp_control.nodes.runner import exit_if_stop_outlasts

    with pytest.raises(ValueError, match="deadline_s"):
        with exit_if_stop_outlasts(threading.Event(), 0):
            pass


def test_node_processes_name_a_node_that_is_slow_to_stop_fails_on_its_stop_or_has_to_be_killed(monkeypatch, capsys):
    """The demo and `dbp launch` go on past such a node, but the user is told which one, with its threads."""
    import subprocess
    import sys
    import time

    from dbp_control.nodes import processes
    from dbp_control.nodes.processes import NodeProcesses

    monkeypatch.setattr(processes, "STOP_REPORT_S", 0.5)
    monkeypatch.setattr(processes, "STOP_KILL_S", 4.0)
    handlers = {"clean": "signal.SIG_DFL",  # the default SIGTERM action: killed by it, status -15
                "failing": "lambda *_: sys.exit(3)",
                "slow": "lambda *_: None",  # the sleep goes on: status 0 about 2 s after its start
                "stuck": "signal.SIG_IGN"}
    codes = {name: f"import signal, sys, time\nsignal.signal(signal.SIGTERM, {handler})\nprint('up', flush=True)\n"
                   + ("time.sleep(1.0)\ntime.sleep(1.0)\n" if name == "slow" else "time.sleep(60)\n")
             for name, handler in handlers.items()}
    graph = NodeProcesses({})
    graph.router = type("Router", (), {"close": lambda self: None})()
    graph.processes = {name: subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
                       for name, code in codes.items()}
    for process in graph.processes.values():
        assert process.stdout.readline() == b"up\n"  # handlers in place before the stop
    started = time.monotonic()
    graph.__exit__(None, None, None)
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert f"node clean (pid {graph.processes['clean'].pid}) exited with status -15 on its stop" in err
    assert "node failing" in err and "exited with status 3 on its stop" in err
    assert "node slow" in err and "still running 0.5 s after SIGTERM; its threads:" in err and ": state S, policy 0" in err
    assert f"node slow (pid {graph.processes['slow'].pid}) exited" not in err  # it stopped with status 0
    assert "node stuck" in err and "killed: still running 4 s after SIGTERM" in err
    assert all(process.returncode is not None for process in graph.processes.values())
    assert processes.thread_states(graph.processes["clean"].pid) == "  (the process has exited meanwhile)"
    for process in graph.processes.values():
        process.stdout.close()


def test_a_stop_signal_handled_past_the_executors_wait_deadline_does_not_park_it_for_good():
    """CPython 3.11's SimpleQueue.get(timeout): a signal handler that runs inside the wait and outlasts its
    deadline leaves a negative timeout, which the next wait reads as "for ever" (gdb caught node processes
    there, `PyThread_acquire_lock_timed(microseconds=-372)`, about one demo stop in seventeen)."""
    import subprocess
    import sys

    code = ("import signal, threading, time\n"
            "from dbp_control.middleware.port import Executor\n"
            "executor, stop = Executor(), threading.Event()\n"
            "def on_signal(*_):\n"
            "    time.sleep(0.3)  # well past the executor's wait of at most 0.1 s\n"
            "    stop.set()\n"
            "signal.signal(signal.SIGUSR2, on_signal)\n"
            "main = threading.main_thread().ident\n"
            "threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGUSR2)).start()\n"
            "started = time.monotonic()\n"
            "executor.spin(until=stop.is_set)\n"
            "print(f'returned after {time.monotonic() - started:.1f} s')\n")
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the executor was still waiting 20 s after its stop")
    assert result.returncode == 0, result.stderr
    seconds = float(result.stdout.split()[2])
    assert 0.3 <= seconds < 1.0, result.stdout
