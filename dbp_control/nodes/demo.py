"""`dbp demo` (what `make demo` runs): the simulated dual-arm robot driven by the default policy through
the node graph of `dbp launch sim` — simulated robot, policy (observation + inference), command node and
recorder, each a process over Zenoh — for a few episodes. Prints success, control rate and
observation-to-command latency; leaves one bag per episode and a plot."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from dbp_control.core.channels import CHANNELS, SERVICES
from dbp_control.core.data.bags import read_bag, typestore
from dbp_control.core.evaluation.closed_loop import TIME_LIMIT_S
from dbp_control.nodes.launcher import mode_arguments
from dbp_control.nodes.processes import NodeProcesses


WHOLE_RUN_S = 3600.0  # the nodes' statistics windows: the demo reports timings over all of it


@dataclass
class DemoEpisode:
    seed: int
    success: bool
    seconds: float  # simulated time to success, or the time limit


def run_demo(out_dir: Path, *, episodes: int = 5, first_seed: int = 100_000, task: str = "lift") -> dict:
    out_dir = Path(out_dir)
    bags = out_dir / "bags"
    earlier = set(bags.iterdir()) if bags.is_dir() else set()  # bags of earlier runs stay, and are not counted
    nodes = mode_arguments("sim", {"sim_robot": [f"task={task}"], "policy": [f"stats_window_s={WHOLE_RUN_S}"],
                                   # nothing moves before the first episode enables the command node
                                   "dual_arm_command": [f"latency_window_s={WHOLE_RUN_S}", "enabled=false"],
                                   "recorder": [f"out_dir={bags}", f"task={task}"]})
    statuses = {"sim": "sim_status", "policy": "policy_status", "command": "command_status", "recorder": "recorder_status"}
    results: list[DemoEpisode] = []
    with NodeProcesses(nodes, statuses) as graph:
        latest, types = graph.latest, typestore("humble").types
        reset, set_enabled = graph.probe.publisher(CHANNELS["sim_reset"]), graph.probe.client(SERVICES["set_enabled"])

        def enable(on: bool) -> None:  # the call returns once the command node took it (and passed it on)
            set_enabled.call(types["std_srvs/srv/SetBool_Request"](data=on), timeout_s=10)
        control = graph.probe.publisher(CHANNELS["episode_control"])
        deadline = time.monotonic() + 90
        while not (set(statuses) <= set(latest)) or not latest["policy"]["ticks"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the graph did not come up within 90 s (statuses seen: {sorted(latest)})")
            graph.check_alive()
            time.sleep(0.2)
        for k in range(episodes):
            seed = first_seed + k
            enable(False)  # no commands while the scene resets
            reset.publish(types["std_msgs/msg/Int64"](data=seed))
            deadline = time.monotonic() + 10
            while latest["sim"]["seed"] != seed or latest["sim"]["time"] > 0.5:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the simulated robot did not start episode {seed} within 10 s")
                time.sleep(0.02)
            control.publish(types["std_msgs/msg/String"](data=f"start {json.dumps({'seed': seed})}"))
            enable(True)
            limit = TIME_LIMIT_S.get(task, 10.0)
            while latest["sim"]["seed"] == seed and not latest["sim"]["success"] and latest["sim"]["time"] < limit:
                time.sleep(0.05)
            status = latest["sim"]
            seconds = status["success_time"] if status["success"] else status["time"]
            results.append(DemoEpisode(seed, bool(status["success"]), float(seconds)))
            control.publish(types["std_msgs/msg/String"](data="success" if status["success"] else "failure"))
            control.publish(types["std_msgs/msg/String"](data="stop"))
            print(f"episode {k + 1}/{episodes} seed {seed}: {'success' if status['success'] else 'failure'} "
                  f"at {seconds:.2f} s", flush=True)
        time.sleep(1.5)  # the recorder closes the last bag
        policy, command = dict(latest["policy"]), dict(latest["command"])
    summary = {"task": task, "episodes": [vars(e) for e in results], "successes": sum(e.success for e in results),
               "control_hz": policy["control_hz"], "inference_ms": policy["inference_ms"],
               "obs_to_command_ms": command["obs_to_command_ms"],
               "bags": sorted(str(p) for p in set(bags.iterdir()) - earlier if not p.name.startswith("."))}
    (out_dir / "demo.json").write_text(json.dumps(summary, indent=2))
    plot_demo(summary, out_dir / "demo.png")
    return summary


def plot_demo(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    episodes = summary["episodes"]
    left.bar([str(e["seed"]) for e in episodes], [e["seconds"] for e in episodes],
             color=["C2" if e["success"] else "C3" for e in episodes])
    left.set(xlabel="seed", ylabel="seconds to success (red: failed)", title=f"{summary['task']}: "
             f"{summary['successes']}/{len(episodes)} through the graph")
    if summary["bags"]:
        bag = Path(summary["bags"][0])
        joints = [(m.log_time_ns, m.msg.position[:6]) for m in read_bag(bag, topics=[CHANNELS["joint_states"].topic])]
        commands = [(m.log_time_ns, m.msg.data[:6]) for m in read_bag(bag, topics=[CHANNELS["left_arm_command"].topic])]
        t0 = joints[0][0]
        for j in range(6):
            right.plot([(t - t0) / 1e9 for t, _ in joints], [p[j] for _, p in joints], color=f"C{j}")
            right.plot([(t - t0) / 1e9 for t, _ in commands], [c[j] for _, c in commands], color=f"C{j}", ls=":")
        right.set(xlabel="s", ylabel="rad")
        right.set_title(f"{bag.name}\nleft arm joints (solid) and commands (dotted)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_demo(summary: dict) -> str:
    latency, inference = summary["obs_to_command_ms"], summary["inference_ms"]
    return (f"{summary['task']}: {summary['successes']}/{len(summary['episodes'])} episodes successful through the "
            f"graph; control rate {summary['control_hz']:.1f} Hz (chunks per second); inference p50 "
            f"{inference['p50']:.2f} ms; observation->command p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms, "
            f"max {latency['max']:.2f} ms (first command of each of the {latency['n']} chunks the command node "
            f"committed to)\n"
            f"bags: {len(summary['bags'])} in {Path(summary['bags'][0]).parent if summary['bags'] else '-'}")
