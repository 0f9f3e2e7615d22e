"""Observation and inference, two nodes' logic in one process (observations handed over in memory, so
camera images are never serialised again at the control rate): camera frames and joint states in,
one action chunk per control tick out on /dbp/action_chunk, stamped with the observation it answers.

Camera frames are decoded, resized and encoded on a worker thread as they arrive (the newest frame per
camera; older ones still waiting are dropped and counted), so the control timer never waits for images."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import header, poses_of, stamp_ns_of, typestore
from dbp_control.core.inference.engine import LiveConfig, PolicyEngine, check_live_config
from dbp_control.core.inference.loop import InferenceLoop
from dbp_control.core.layout import CAMERAS, SIDES, joint_names
from dbp_control.core.observation.assembler import ObservationAssembler
from dbp_control.core.observation.images import ImageError
from dbp_control.core.observation.sync import DEFAULT_QUEUE_SIZE, DEFAULT_SLOP_S
from dbp_control.core.paths import MODELS_DIR
from dbp_control.middleware.port import Node

NAME = "policy"
JOINTS = [n for side in SIDES for n in joint_names(side)]
DEFAULTS: dict[str, Any] = {
    "model": "lift_dbp_state",  # a folder under models/, or a path
    "rate_hz": 100.0,  # control rate: one chunk per tick
    "cameras": ",".join(CAMERAS),  # the cameras this robot has
    "object_poses": False,  # simulation only: append /sim/object_poses to the state (state policies)
    "queue_size": DEFAULT_QUEUE_SIZE,
    "slop_s": DEFAULT_SLOP_S,
    "max_age_s": 0.5,  # inputs older than this on arrival are dropped
    "threads": 2,  # ONNX Runtime intra-op threads
}


class PolicyNode:
    def __init__(self, node: Node) -> None:
        self.node = node
        p = self.params = node.parameters(DEFAULTS)
        torch.set_num_threads(1)  # image resizing on the frame worker: no second busy-waiting thread pool
        model = Path(p["model"]) if Path(p["model"]).is_dir() else MODELS_DIR / p["model"]
        cameras = tuple(c for c in p["cameras"].split(",") if c)
        self.engine = PolicyEngine(model, threads=p["threads"])
        # the observation node resizes every frame to the policy's size, so sizes match by construction
        live = LiveConfig(cameras={c: self.engine.image_size(c) for c in cameras if c in self.engine.cameras},
                          joint_names=JOINTS, state_keys=("joints", "objects") if p["object_poses"] else ("joints",))
        check_live_config(self.engine.sidecar, live)  # a policy for another robot stops here, before anything moves
        node.logger.info("policy %s (%s, NFE %d) on %s", model.name, self.engine.sidecar["method"],
                         self.engine.sidecar["nfe"], ", ".join(self.engine.providers))
        self.loop = InferenceLoop(self.engine)
        self.assembler = ObservationAssembler(self.engine.cameras, queue_size=p["queue_size"], slop_s=p["slop_s"],
                                              max_age_s=p["max_age_s"])  # frames arrive already encoded
        self.lock = threading.Lock()  # the assembler is shared by the executor and the frame worker
        self._frames: dict[str, Any] = {}
        self._frames_ready = threading.Condition()
        self.dropped_frames = 0
        if self.engine.cameras:
            threading.Thread(target=self._encode_frames, name="frame-encoder", daemon=True).start()
        self.types = typestore(node.distro).types
        self.objects: np.ndarray | None = None
        self.rejected_images = 0
        self.inference_ms: deque[float] = deque(maxlen=500)  # recent ticks, for the status
        self.ticks = 0  # chunks published
        self.timer_ticks = 0  # control ticks, with or without a new observation
        self.started_ns = node.now_ns()
        self.unchanged = 0
        self._last_stamp = -1
        self._joint_order: list[int] | None = None
        self.chunk_publisher = node.publisher(CHANNELS["action_chunk"])
        self.status_publisher = node.publisher(CHANNELS["policy_status"])
        node.subscribe(CHANNELS["joint_states"], self.on_joint_state)
        for cam in self.engine.cameras:
            node.subscribe(CHANNELS[f"{cam}_image"], lambda msg, cam=cam: self.on_image(cam, msg))
        if p["object_poses"]:
            node.subscribe(CHANNELS["object_poses"], lambda msg: setattr(self, "objects", poses_of(msg).reshape(-1)))
        node.timer(1.0 / p["rate_hz"], self.tick)
        node.timer(1.0 / CHANNELS["policy_status"].rate_hz, self.publish_status)

    def on_joint_state(self, msg: Any) -> None:
        names = list(msg.name)
        if self._joint_order is None or len(names) != len(self._joint_order):
            if any(j not in names for j in JOINTS):
                return
            self._joint_order = [names.index(j) for j in JOINTS]
        with self.lock:
            self.assembler.push_joint_state(stamp_ns_of(msg), np.asarray(msg.position)[self._joint_order],
                                            self.node.now_ns())

    def on_image(self, camera: str, msg: Any) -> None:
        with self._frames_ready:
            self.dropped_frames += camera in self._frames
            self._frames[camera] = msg
            self._frames_ready.notify()

    def _encode_frames(self) -> None:
        while True:
            with self._frames_ready:
                self._frames_ready.wait_for(lambda: bool(self._frames))
                frames, self._frames = self._frames, {}
            for camera, msg in frames.items():
                try:
                    features = self.loop.features_of(camera, msg)
                except ImageError as exc:
                    self.rejected_images += 1
                    self.node.logger.warning("rejected %s image: %s", camera, exc)
                    continue
                with self.lock:
                    self.assembler.push_image(camera, stamp_ns_of(msg), features, self.node.now_ns())

    def tick(self) -> None:
        self.timer_ticks += 1
        now = self.node.now_ns()
        with self.lock:
            obs = self.assembler.observation(now)
        if obs is None or (self.params["object_poses"] and self.objects is None):
            return
        if obs.stamp_ns == self._last_stamp:
            self.unchanged += 1  # no new joint state since the last chunk: its answer would be the same
            return
        self._last_stamp = obs.stamp_ns
        start = time.perf_counter()
        chunk = self.loop.step(obs, self.objects if self.params["object_poses"] else None)
        self.inference_ms.append((time.perf_counter() - start) * 1e3)
        self.ticks += 1
        step_ns = round(chunk.step_s * 1e9)
        duration = self.types["builtin_interfaces/msg/Duration"]
        point = self.types["trajectory_msgs/msg/JointTrajectoryPoint"]
        empty = np.zeros(0)
        self.chunk_publisher.publish(self.types["trajectory_msgs/msg/JointTrajectory"](
            header=header(self.node.distro, chunk.stamp_ns, "world"), joint_names=JOINTS,
            points=[point(positions=a.astype(np.float64), velocities=empty, accelerations=empty, effort=empty,
                          time_from_start=duration(sec=k * step_ns // 10**9, nanosec=k * step_ns % 10**9))
                    for k, a in enumerate(chunk.actions)]))

    def status(self) -> dict[str, Any]:
        recent = list(self.inference_ms)
        stats = self.assembler.stats
        seconds = (self.node.now_ns() - self.started_ns) / 1e9
        return {"ticks": self.ticks, "timer_ticks": self.timer_ticks, "control_hz": self.timer_ticks / max(seconds, 1e-9),
                "unchanged_observations": self.unchanged,
                "inference_ms_p50": float(np.percentile(recent, 50)) if recent else None,
                "inference_ms_p99": float(np.percentile(recent, 99)) if recent else None,
                "providers": self.engine.providers, "rejected_images": self.rejected_images,
                "dropped_frames": self.dropped_frames,
                "sync": vars(self.assembler.sync.stats) if self.assembler.sync else None,
                "inputs": {name: vars(s) for name, s in stats.inputs.items()},
                "ages_ms": self.assembler.ages_ms(self.node.now_ns())}

    def publish_status(self) -> None:
        self.status_publisher.publish(self.types["std_msgs/msg/String"](data=json.dumps(self.status())))
