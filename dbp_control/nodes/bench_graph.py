"""`dbp bench graph`: the full graph as processes over Zenoh with three 640x480 cameras — the simulated
robot, observation + inference (a three-camera DBP image policy of the `small` preset), the command
node — and what it sustains: control rate, observation-to-command latency, CPU per node.

The image policy is exported untrained (its weights do not change its cost). The simulated robot
republishes each camera's first rendered frame with fresh stamps, so the CPU goes to the graph (image
transport, synchronisation, decoding, resizing, encoding, inference, commands) rather than to software
rendering, which a real robot's cameras do not need.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dbp_control.core.channels import CHANNELS
from dbp_control.core.export.onnx_export import export_policy
from dbp_control.core.layout import CAMERAS, SIDES, joint_names
from dbp_control.core.policies.base import make_policy
from dbp_control.core.policies.dbp.modeling import DBPConfig
from dbp_control.core.training.checkpoint import save_checkpoint
from dbp_control.nodes.processes import NodeProcesses

JOINTS = [n for side in SIDES for n in joint_names(side)]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def image_policy_model(folder: Path, preset: str = "small") -> Path:
    """An untrained three-camera DBP policy, exported like a trained one (for timing only)."""
    model = folder / "model"
    if (model / "policy.yaml").exists():
        return model
    torch.manual_seed(0)
    policy = make_policy(DBPConfig(state_dim=14, action_dim=14, cameras=CAMERAS, preset=preset))
    policy.fit_normalizers(torch.randn(256, 2, 14), torch.randn(256, 16, 14))
    layout = {"joints": JOINTS, "state": {"topic": CHANNELS["joint_states"].topic, "names": JOINTS},
              "action": {side: {"topic": CHANNELS[f"{side}_arm_command"].topic, "names": joint_names(side)}
                         for side in SIDES},
              "cameras": {cam: {"topic": CHANNELS[f"{cam}_image"].topic, "size": [96, 96]} for cam in CAMERAS},
              "objects": None}
    checkpoint = folder / "untrained_image_policy.pt"
    save_checkpoint(checkpoint, {"policy_config": policy.config.to_dict(), "step": 0, "model": policy.state_dict(),
                                 "ema": {"model": policy.state_dict()},
                                 "metadata": {"dataset": {"layout": layout, "rate_hz": 10.0, "fingerprint": "untrained"},
                                              "state_keys": ["joints"]}})
    export_policy(checkpoint, model, overwrite=True)
    return model


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


@dataclass
class GraphBenchResult:
    seconds: float
    control_hz: float
    chunks_per_s: float
    inference_ms: tuple[float, float]  # p50, p99 (the policy node's own timing)
    obs_to_command_ms: tuple[float, float, float]  # p50, p99, max
    cpu_percent: dict[str, float]  # per node process, % of one core
    image_bytes_per_s: float


def run_graph_benchmark(out_dir: Path, *, seconds: float = 20.0, warmup_s: float = 10.0,
                        image_size: tuple[int, int] = (480, 640)) -> GraphBenchResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    model = image_policy_model(out_dir)
    nodes = {"sim_robot": ["sim_robot", "--set", f"image_height={image_size[0]}", "--set", f"image_width={image_size[1]}",
                           "--set", "render=false"],
             "policy": ["policy", "--set", f"model={model}"], "dual_arm_command": ["dual_arm_command"]}
    with NodeProcesses(nodes, {"policy": "policy_status", "command": "command_status"}) as graph:
        image_bytes = [0]
        graph.probe.subscribe(CHANNELS["head_image"], lambda m: image_bytes.__setitem__(0, image_bytes[0] + len(m.data)))
        time.sleep(warmup_s)
        graph.check_alive()
        latest = graph.latest
        if "policy" not in latest or not latest["policy"]["ticks"]:
            raise RuntimeError("the policy published no chunk during warm-up")
        start = time.monotonic()
        cpu0 = {n: _cpu_seconds(p.pid) for n, p in graph.processes.items()}
        p0, bytes0 = dict(latest["policy"]), image_bytes[0]
        time.sleep(seconds)
        elapsed = time.monotonic() - start
        cpu = {n: 100 * (_cpu_seconds(p.pid) - cpu0[n]) / elapsed for n, p in graph.processes.items()}
        p1, c1 = latest["policy"], latest["command"]
    return GraphBenchResult(
        seconds=elapsed, control_hz=(p1["timer_ticks"] - p0["timer_ticks"]) / elapsed,
        chunks_per_s=(p1["ticks"] - p0["ticks"]) / elapsed,
        inference_ms=(p1["inference_ms_p50"], p1["inference_ms_p99"]),
        obs_to_command_ms=(c1["obs_to_command_ms_p50"], c1["obs_to_command_ms_p99"], c1["obs_to_command_ms_max"]),
        cpu_percent=cpu, image_bytes_per_s=3 * (image_bytes[0] - bytes0) / elapsed)


def format_graph_table(r: GraphBenchResult) -> str:
    p50, p99, worst = r.obs_to_command_ms
    lines = [
        f"full graph, three 640x480 cameras at 30 Hz ({r.image_bytes_per_s / 1e6:.0f} MB/s of images), {r.seconds:.0f} s:",
        f"  control rate          {r.control_hz:8.1f} Hz (target 100); chunks published {r.chunks_per_s:.1f}/s",
        f"  inference (head)      p50 {r.inference_ms[0]:.2f} ms, p99 {r.inference_ms[1]:.2f} ms",
        f"  observation->command  p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms (target p99 < 10 ms)",
        "  CPU per node (% of one core): " + ", ".join(f"{n} {c:.0f}%" for n, c in r.cpu_percent.items()),
    ]
    met = r.control_hz >= 99.0 and p99 < 10  # a 100 Hz timer measures 99.x over a window
    lines.append(f"  goal (>= 100 Hz sustained, p99 < 10 ms): {'met' if met else 'NOT met'}")
    return "\n".join(lines)
