"""The policy process: two nodes in one process, `observation` and `policy` (inference), so observations
are handed over in memory and camera images are never serialised again at the control rate (nor is a
custom message package needed).

- `observation`: camera frames and joint states (and, in simulation, object poses) in; frames matched
  to joint states by `ApproximateTimeSync`; each synchronised frame decoded, resized and encoded into
  the policy's image features once, on a worker thread as it arrives (the newest frame per camera; older
  ones still waiting are dropped and counted), so the control timer never waits for images. Sync
  statistics and input ages on /dbp/observation_status.
- `policy`: a control timer that takes the newest observation from the observation node and publishes one
  action chunk per new joint state on /dbp/action_chunk, stamped with the observation it answers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import joint_trajectory_msg, poses_of, stamp_ns_of, typestore
from dbp_control.core.inference.cpus import allowed_cpus, pin_current_thread, resolve_cpus
from dbp_control.core.inference.engine import LiveConfig, PolicyEngine, check_live_config
from dbp_control.core.inference.loop import InferenceLoop, rgb_features
from dbp_control.core.latency import LatencyWindow
from dbp_control.core.layout import CAMERAS, ROBOT_JOINTS
from dbp_control.core.observation.assembler import Observation, ObservationAssembler
from dbp_control.core.observation.images import ImageError, decode_image
from dbp_control.core.observation.sync import DEFAULT_QUEUE_SIZE, DEFAULT_SLOP_S
from dbp_control.core.paths import MODELS_DIR
from dbp_control.middleware.port import Node
from dbp_control.nodes.newest_worker import NewestWorker
from dbp_control.nodes.scheduling import use_realtime_priority

FRAME_WORKER_NICENESS = 10  # added to the frame worker thread's niceness
OBSERVATION_DEFAULTS: dict[str, Any] = {
    "cameras": ",".join(CAMERAS),  # the cameras this robot has
    "object_poses": False,  # simulation only: append /sim/object_poses to the state (state policies)
    "queue_size": DEFAULT_QUEUE_SIZE,
    "slop_s": DEFAULT_SLOP_S,
    "max_age_s": 0.5,  # inputs older than this on arrival are dropped
}
INFERENCE_DEFAULTS: dict[str, Any] = {
    "model": "lift_dbp_state",  # a folder under models/, or a path
    # the control timer polls for new joint states: a tick that finds one infers a chunk, so chunks follow the
    # joint states (125 Hz from UR drivers) at most one tick late, instead of a free-running 100 Hz timer
    # adding up to a whole period (plus the beat between the two rates) to every observation's age
    "timer_hz": 500.0,
    "max_chunk_hz": 200.0,  # at most this many chunks per second (drivers may publish joint states at 500 Hz)
    "threads": 1,  # ONNX Runtime intra-op threads of the head (on two cores a second one competes with the frame worker)
    # CPUs of the thread that runs the head and of the frame worker: "none" (not pinned), "auto" (two or more
    # CPUs: the head on the last, the frame worker on the others) or CPU numbers, e.g. "3" or "0,1,2". Not
    # pinned by default: on two shared cores a pinned head cannot move to the free one when the command node
    # or the simulator takes its core (`dbp bench graph`: worst observation -> chunk 19 ms pinned, 9 not)
    "head_cpus": "none",
    "encoder_cpus": "none",
    # int8: the encoders of `dbp export --int8-encoders`, a few times cheaper per frame on a CPU (their
    # output error against float32 is in the model's policy.yaml)
    "encoder_precision": "float32",
    # int8: the head of `dbp export --int8-head`, its widest convolutions quantised (its error is there too)
    "head_precision": "float32",
    # standard deviation of the sampling noise (z, and a DDPM head's per-step noise): 1 samples the learned
    # distribution, 0 gives one deterministic chunk per observation (README: success against noise scale)
    "noise_scale": 1.0,
    "stats_window_s": 10.0,  # the status reports timings over this window
    # SCHED_FIFO priority of both nodes' executors (0: normal scheduling); the frame worker stays below it
    "realtime_priority": 40,
}


class ObservationNode:
    """Sensors -> the newest synchronised observation, for the inference node in the same process."""

    def __init__(self, node: Node, engine: PolicyEngine, *, encoder_cpus: tuple[int, ...] = ()) -> None:
        self.node = node
        p = self.params = node.parameters(OBSERVATION_DEFAULTS)
        self.engine = engine
        self.encoder_cpus = encoder_cpus  # the frame worker's (empty: not pinned)
        self.frame_worker_cpus: list[int] | None = None  # the affinity in effect, read back once pinned
        configured = tuple(c for c in p["cameras"].split(",") if c)
        # frames are resized to the policy's size here, so sizes match by construction
        self.live = LiveConfig(cameras={c: engine.image_size(c) for c in configured if c in engine.cameras},
                               joint_names=ROBOT_JOINTS,
                               state_keys=("joints", "objects") if p["object_poses"] else ("joints",))
        self.assembler = ObservationAssembler(engine.cameras, queue_size=p["queue_size"], slop_s=p["slop_s"],
                                              max_age_s=p["max_age_s"])  # frames arrive already encoded
        self.lock = threading.Lock()  # the assembler is shared by this executor, the frame worker and inference
        self.rejected_images = 0
        # each camera's newest frame (stamp, RGB), encoded off the executor
        self.frame_worker: NewestWorker[tuple[int, np.ndarray]] = NewestWorker(
            "frame-encoder", self._encode_frame, niceness=FRAME_WORKER_NICENESS, setup=self._pin_frame_worker)
        self.objects: np.ndarray | None = None  # the simulator's object poses, published with each joint state
        self.objects_stamp_ns = -(2**62)
        self._joint_order: list[int] | None = None
        self.types = typestore(node.distro).types
        self.status_publisher = node.publisher(CHANNELS["observation_status"])
        node.subscribe(CHANNELS["joint_states"], self.on_joint_state)
        for cam in engine.cameras:
            node.subscribe(CHANNELS[f"{cam}_image"], lambda msg, cam=cam: self.on_image(cam, msg))
        if p["object_poses"]:
            node.subscribe(CHANNELS["object_poses"], self.on_object_poses)
        node.timer(1.0 / CHANNELS["observation_status"].rate_hz, self.publish_status)

    def start(self) -> None:
        """Start encoding frames (before the process's threads get real-time scheduling, which this one stays
        out of: threads inherit their creator's)."""
        if self.engine.cameras:
            self.frame_worker.start()
            self.node.on_shutdown(self.frame_worker.stop)

    def on_object_poses(self, msg: Any) -> None:
        with self.lock:
            self.objects, self.objects_stamp_ns = poses_of(msg).reshape(-1), stamp_ns_of(msg)

    def on_joint_state(self, msg: Any) -> None:
        names = list(msg.name)
        if self._joint_order is None or len(names) != len(self._joint_order):
            if any(j not in names for j in ROBOT_JOINTS):
                return
            self._joint_order = [names.index(j) for j in ROBOT_JOINTS]
        with self.lock:
            self.assembler.push_joint_state(stamp_ns_of(msg), np.asarray(msg.position)[self._joint_order],
                                            self.node.now_ns())

    def on_image(self, camera: str, msg: Any) -> None:
        # checked on arrival (cheap: no copy), so a bad frame is always counted and never displaces a good one
        # still waiting for the worker, which keeps only each camera's newest frame
        try:
            rgb = decode_image(msg)
        except ImageError as exc:
            self.rejected_images += 1
            self.node.logger.warning("rejected %s image: %s", camera, exc)
            return
        self.frame_worker.put(camera, (stamp_ns_of(msg), rgb))

    def _pin_frame_worker(self) -> None:
        self.frame_worker_cpus = pin_current_thread(self.encoder_cpus)  # off the head's core

    def _encode_frame(self, camera: str, frame: tuple[int, np.ndarray]) -> None:
        stamp_ns, rgb = frame
        features = rgb_features(self.engine, camera, rgb)
        with self.lock:
            self.assembler.push_image(camera, stamp_ns, features, self.node.now_ns())

    def latest(self, now_ns: int) -> tuple[Observation, np.ndarray | None] | None:
        """The newest complete observation, with the object poses stamped with its joint state (when the
        state includes them); None while something is missing."""
        with self.lock:
            obs = self.assembler.observation(now_ns)
            objects, objects_stamp = self.objects, self.objects_stamp_ns
        if obs is None:
            return None
        if not self.params["object_poses"]:
            return obs, None
        if objects is None or objects_stamp < obs.stamp_ns:
            return None  # the poses published with this joint state are still on their way
        return obs, objects

    def status(self) -> dict[str, Any]:
        with self.lock:
            stats = self.assembler.stats
            return {"rejected_images": self.rejected_images, "dropped_frames": self.frame_worker.dropped,
                    "frame_worker_cpus": self.frame_worker_cpus,
                    "sync": vars(self.assembler.sync.stats) if self.assembler.sync else None,
                    "inputs": {name: vars(s) for name, s in stats.inputs.items()},
                    "observations": stats.observations, "not_ready": stats.not_ready,
                    "ages_ms": self.assembler.ages_ms(self.node.now_ns())}

    def publish_status(self) -> None:
        self.status_publisher.publish(self.types["std_msgs/msg/String"](data=json.dumps(self.status())))


class InferenceNode:
    """The observation node's newest observation -> one action chunk per new joint state, on a timer."""

    def __init__(self, node: Node) -> None:
        self.node = node
        p = self.params = node.parameters(INFERENCE_DEFAULTS)
        for name in ("timer_hz", "max_chunk_hz"):
            if not p[name] > 0:
                raise ValueError(f"policy parameter {name} must be positive, got {p[name]}")
        model = Path(p["model"]) if Path(p["model"]).is_dir() else MODELS_DIR / p["model"]
        self.head_cpus, self.encoder_cpus = resolve_cpus(p["head_cpus"], p["encoder_cpus"], allowed_cpus())
        self.tick_thread_cpus: list[int] | None = None  # the affinity in effect, read back once pinned
        torch.set_num_threads(1)  # image resizing on the frame worker: no second busy-waiting thread pool
        self.engine = PolicyEngine(model, threads=p["threads"], encoder_precision=p["encoder_precision"],
                                   head_precision=p["head_precision"], noise_scale=p["noise_scale"])
        node.logger.info("policy %s (%s, NFE %d, %s head, %s encoders) on %s", model.name,
                         self.engine.sidecar["method"], self.engine.sidecar["nfe"], p["head_precision"],
                         p["encoder_precision"], ", ".join(self.engine.providers))
        self.observations: ObservationNode | None = None  # the process attaches its observation node
        self.loop = InferenceLoop(self.engine)
        self.types = typestore(node.distro).types
        window_ns = int(p["stats_window_s"] * 1e9)
        self.inference_time = LatencyWindow(window_ns)  # one chunk's inference (head; features come before)
        self.observation_age = LatencyWindow(window_ns)  # joint state stamp -> the tick that used it
        self.publish_age = LatencyWindow(window_ns)  # joint state stamp -> its chunk published
        self.ticks = 0  # chunks published
        self.timer_ticks = 0  # control timer ticks, with or without a new joint state
        self.started_ns = node.now_ns()
        self.unchanged = 0
        self.restarts = 0  # history restarts when /dbp/enable turns true
        self.realtime_priority = 0  # set by the process once the scheduling is applied
        self._enabled = False  # as last seen on /dbp/enable
        self._last_stamp = -(2**62)  # the joint state stamp of the last chunk
        self._min_chunk_interval_ns = int(1e9 / p["max_chunk_hz"])
        self._first_chunk_ns: int | None = None
        self.chunk_publisher = node.publisher(CHANNELS["action_chunk"])
        self.status_publisher = node.publisher(CHANNELS["policy_status"])
        node.subscribe(CHANNELS["enable"], self.on_enable)
        node.timer(1.0 / p["timer_hz"], self.tick)
        node.timer(1.0 / CHANNELS["policy_status"].rate_hz, self.publish_status)

    def on_enable(self, msg: Any) -> None:
        enabled = bool(msg.data)
        if enabled and not self._enabled:
            # the command node follows only plans from observations after this: start them afresh
            self.loop.restart()
            self.restarts += 1
        self._enabled = enabled

    def tick(self) -> None:
        if self.tick_thread_cpus is None:  # the executor thread that runs every tick, and so the head
            self.tick_thread_cpus = pin_current_thread(self.head_cpus)
        self.timer_ticks += 1
        now = self.node.now_ns()
        latest = self.observations.latest(now) if self.observations is not None else None
        if latest is None:
            return
        obs, objects = latest
        if obs.stamp_ns == self._last_stamp:
            self.unchanged += 1  # no new joint state since the last chunk: its answer would be the same
            return
        if obs.stamp_ns - self._last_stamp < self._min_chunk_interval_ns:
            return  # measured sooner after the last one than max_chunk_hz allows (stamps, not arrival times, which jitter)
        if self._first_chunk_ns is None:
            self._first_chunk_ns = now
        self._last_stamp = obs.stamp_ns
        self.observation_age.add(now, now - obs.stamp_ns)
        start = time.perf_counter_ns()
        chunk = self.loop.step(obs, objects)
        self.inference_time.add(now, time.perf_counter_ns() - start)
        self.ticks += 1
        self.chunk_publisher.publish(joint_trajectory_msg(self.node.distro, chunk.stamp_ns, "world", ROBOT_JOINTS,
                                                          chunk.actions, chunk.step_s))
        self.publish_age.add(now, self.node.now_ns() - chunk.stamp_ns)

    def _chunk_rate(self, now_ns: int) -> float:
        """Chunks per second over the statistics window (or since the first chunk, if that is more recent)."""
        if self._first_chunk_ns is None:
            return 0.0
        span_ns = min(self.inference_time.window_ns, now_ns - self._first_chunk_ns)
        return self.inference_time.count(now_ns) / max(span_ns / 1e9, 1e-9)

    def status(self) -> dict[str, Any]:
        now = self.node.now_ns()
        seconds = (now - self.started_ns) / 1e9
        return {"ticks": self.ticks, "timer_ticks": self.timer_ticks, "control_hz": self._chunk_rate(now),
                "timer_hz": self.timer_ticks / max(seconds, 1e-9),
                "unchanged_observations": self.unchanged, "restarts": self.restarts,
                "inference_ms": self.inference_time.summary(now),
                "observation_age_ms": self.observation_age.summary(now),  # joint state stamp -> tick
                "obs_to_publish_ms": self.publish_age.summary(now),  # joint state stamp -> chunk published
                "providers": self.engine.providers, "encoder_precision": self.engine.encoder_precision,
                "head_precision": self.engine.head_precision, "noise_scale": self.engine.noise_scale,
                "head_thread_cpus": self.tick_thread_cpus,
                "realtime_priority": self.realtime_priority}

    def publish_status(self) -> None:
        self.status_publisher.publish(self.types["std_msgs/msg/String"](data=json.dumps(self.status())))


class PolicyProcess:
    """The `policy` executable: the observation and inference nodes around one loaded policy."""

    NODE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"observation": OBSERVATION_DEFAULTS,
                                                          "policy": INFERENCE_DEFAULTS}

    def __init__(self, nodes: Mapping[str, Node]) -> None:
        self.inference = InferenceNode(nodes["policy"])
        self.observation = ObservationNode(nodes["observation"], self.inference.engine,
                                           encoder_cpus=self.inference.encoder_cpus)
        # a policy for another robot stops here, before anything moves
        check_live_config(self.inference.engine.sidecar, self.observation.live)
        self.inference.observations = self.observation
        self.observation.start()
        self.inference.realtime_priority = use_realtime_priority(
            self.inference.params["realtime_priority"], nodes["policy"].logger,
            exclude=[self.observation.frame_worker.thread.native_id or -1])
