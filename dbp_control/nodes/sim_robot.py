"""The simulated dual-arm robot as a node: the robot's topics, published and subscribed as the real
drivers and cameras do, so the live graph runs against it unchanged.

Publishes joint states, the three cameras (Image + CameraInfo), the object poses and an episode status;
takes per-arm commands (as a forward_position_controller or a joint_trajectory_controller would: the last
point of a trajectory is the target) and a reset (seed) that starts a new episode. The physics follows the
wall clock (times `real_time_factor`); every stamp is the wall-clock time of the state it describes.
Camera frames are rendered on a worker thread of lower priority from a copy of the state taken on the
executor: software rendering of three cameras takes about a core on a small CPU, and on the executor it held
back the joint states, the physics and with them the whole control loop (`dbp demo` on a 2-core Xeon: 3-4
of 5 at 66-74 chunks/s rendering there, 5 of 5 at 122-124 without rendering). Where the CPU cannot render
all frames, the cameras lose rate (each camera's newest state is drawn; the others are dropped and counted),
not the joint states.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import (
    camera_info_msg,
    image_msg,
    joint_state_msg,
    pose_array_msg,
    trajectory_positions,
    typestore,
)
from dbp_control.core.layout import CAMERAS, SIDES, joint_names
from dbp_control.core.sim.robot import CameraView, DualArmSim
from dbp_control.core.sim.tasks import make_task
from dbp_control.middleware.port import Node
from dbp_control.nodes.newest_worker import NewestWorker
from dbp_control.nodes.scheduling import use_realtime_priority

NAME = "sim_robot"
CAMERA_WORKER_NICENESS = 10  # added to the render worker thread's niceness: the executor wins the CPU
DEFAULTS: dict[str, Any] = {
    "task": "lift",
    "seed": 0,
    "image_height": 240,
    "image_width": 320,
    "physics_hz": 500.0,
    "real_time_factor": 1.0,
    "cameras": True,  # False: no rendering (state-only runs)
    "render": True,  # False: each camera's first frame of an episode is republished (benchmarks of the graph
    # itself, where software rendering of three large frames would take the CPU the other nodes need)
    "realtime_priority": 30,  # SCHED_FIFO, as robot drivers run (0: normal); below the policy's and command node's
}


class SimRobot:
    """Node logic over the port: timers publish, callbacks set targets; nothing here knows the backend."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.params = p = node.parameters(DEFAULTS)
        if not p["real_time_factor"] > 0:
            raise ValueError(f"real_time_factor must be positive, got {p['real_time_factor']}")
        self.task = make_task(p["task"])
        self.sim = DualArmSim(physics_hz=p["physics_hz"], image_size=(p["image_height"], p["image_width"]))
        self.distro = node.distro
        self.types = typestore(self.distro).types
        self.rejected = 0
        self._publishers = {name: node.publisher(CHANNELS[name]) for name in
                            ("joint_states", "object_poses", "sim_status",
                             *(f"{cam}_{kind}" for cam in CAMERAS for kind in ("image", "camera_info")))}
        for i, side in enumerate(SIDES):
            node.subscribe(CHANNELS[f"{side}_arm_command"], lambda msg, i=i: self.on_command(i, msg.data))
            node.subscribe(CHANNELS[f"{side}_arm_trajectory"], lambda msg, i=i: self.on_trajectory(i, msg))
        node.subscribe(CHANNELS["sim_reset"], lambda msg: self.reset(int(msg.data)))
        self.reset(p["seed"])
        node.timer(1.0 / CHANNELS["joint_states"].rate_hz, self.on_joint_timer)
        node.timer(1.0 / CHANNELS["sim_status"].rate_hz, self.publish_status)
        # each camera's newest state not yet drawn (stamp, seed, qpos), rendered off the executor
        self.camera_worker: NewestWorker[tuple[int, int, np.ndarray]] = NewestWorker(
            "camera-renderer", self._render_frame, niceness=CAMERA_WORKER_NICENESS)
        self._camera_view = CameraView(self.sim)  # used by the worker only: its OpenGL context is made there
        self._first_frames: dict[str, tuple[int, np.ndarray]] = {}  # render=False: each camera's first frame, seed
        if p["cameras"]:
            # one camera per tick, in turn (each still at its rate), so the worker's frames spread evenly
            node.timer(1.0 / (CHANNELS["head_image"].rate_hz * len(CAMERAS)), self.queue_next_camera)
            self._next_camera = 0
            self.camera_worker.start()  # before real-time scheduling, which it stays out of
            node.on_shutdown(self.camera_worker.stop)
        self.realtime_priority = use_realtime_priority(p["realtime_priority"], node.logger,
                                                       exclude=[self.camera_worker.thread.native_id or -1])

    def reset(self, seed: int) -> None:
        self.task.reset(self.sim, seed)
        self.seed = seed
        self.succeeded_at: float | None = None  # simulated time the task was first done this episode
        self.targets = self.sim.joint_state().position.copy()
        self.sim.set_targets(self.targets)
        self.start_ns = self.node.now_ns()
        self.node.logger.info("episode %s seed %d started", self.task.name, seed)

    def on_trajectory(self, arm: int, msg: Any) -> None:
        try:
            positions, _ = trajectory_positions(msg, joint_names(SIDES[arm]))
            if not len(positions):
                raise ValueError("the trajectory has no points")
        except ValueError as exc:
            self.rejected += 1
            self.node.logger.warning("rejected %s arm trajectory: %s", SIDES[arm], exc)
            return
        self.on_command(arm, positions[-1])

    def on_command(self, arm: int, data: Any) -> None:
        values = np.asarray(data, dtype=np.float64)
        side = SIDES[arm]
        if values.shape != (len(joint_names(side)),) or not np.isfinite(values).all():
            self.rejected += 1
            self.node.logger.warning("rejected %s arm command: %d values%s (expected %d finite)", side, values.size,
                                     "" if np.isfinite(values).all() else " with NaN/inf", len(joint_names(side)))
            return
        self.targets[7 * arm : 7 * arm + 7] = values
        self.sim.set_targets(self.targets)

    def advance(self) -> None:
        """Step the physics up to the wall clock (at most 0.1 s at once, so a stall does not explode)."""
        due = (self.node.now_ns() - self.start_ns) / 1e9 * self.params["real_time_factor"]
        lag = min(due - self.sim.time, 0.1)
        steps = math.floor(lag / self.sim.model.opt.timestep)
        for _ in range(steps):
            self.sim.step(self.sim.model.opt.timestep)
        if steps:
            self.task.observe(self.sim)
            if self.succeeded_at is None and self.task.success(self.sim):
                self.succeeded_at = self.sim.time
                self.node.logger.info("episode %s seed %d succeeded at t=%.2f s", self.task.name, self.seed, self.sim.time)

    def on_joint_timer(self) -> None:
        self.advance()
        state = self.sim.joint_state()
        stamp = self.node.now_ns()
        self._publishers["joint_states"].publish(
            joint_state_msg(self.distro, stamp, state.names, state.position, state.velocity))
        objects = CHANNELS["object_poses"]  # with the joint state, under its stamp
        self._publishers["object_poses"].publish(pose_array_msg(self.distro, stamp, objects.frame_id,
                                                                self.sim.object_poses()))

    def queue_next_camera(self) -> None:
        """Hand the worker the next camera's state, stamped now (a copy of the configuration: cheap)."""
        self.advance()  # the state the stamp says
        cam = CAMERAS[self._next_camera]
        self._next_camera = (self._next_camera + 1) % len(CAMERAS)
        self.camera_worker.put(cam, (self.node.now_ns(), self.seed, self.sim.data.qpos.copy()))

    def _render_frame(self, cam: str, pose: tuple[int, int, np.ndarray]) -> None:
        stamp, seed, qpos = pose
        if self.params["render"]:
            frame = self._camera_view.render(cam, qpos)
        else:
            if self._first_frames.get(cam, (None,))[0] != seed:
                self._first_frames[cam] = (seed, self._camera_view.render(cam, qpos))
            frame = self._first_frames[cam][1]
        image, info = CHANNELS[f"{cam}_image"], CHANNELS[f"{cam}_camera_info"]
        self._publishers[f"{cam}_image"].publish(image_msg(self.distro, stamp, image.frame_id, frame))
        self._publishers[f"{cam}_camera_info"].publish(
            camera_info_msg(self.distro, stamp, info.frame_id, self.sim.intrinsics[cam]))

    def status(self) -> dict[str, Any]:
        # success is kept once reached, as closed-loop evaluation counts it: a reader polling the status can
        # miss a success that held for less than one status period (the demo once called such an episode failed)
        return {"task": self.task.name, "seed": self.seed, "time": round(self.sim.time, 4),
                "success": self.succeeded_at is not None, "success_time": self.succeeded_at,
                "reward": float(self.task.reward(self.sim)),
                "rejected_commands": self.rejected, "dropped_frames": self.camera_worker.dropped,
                "realtime_priority": self.realtime_priority}

    def publish_status(self) -> None:
        self._publishers["sim_status"].publish(self.types["std_msgs/msg/String"](data=json.dumps(self.status())))
