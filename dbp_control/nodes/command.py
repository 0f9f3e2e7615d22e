"""The dual-arm command node: action chunks in, per-arm position commands out at the driver rate, through
the safety filter and watchdog (`dbp_control.core.command`), which the policy cannot bypass.

Commands go to each arm's forward_position_controller (`std_msgs/Float64MultiArray`, the default) or, with
`command_type: trajectory`, to its joint_trajectory_controller as a one-point `JointTrajectory` due one
command period after arrival, so the controller interpolates between consecutive commands.

Enable and emergency stop come as topics or as services (`/dbp/set_enabled`, `/dbp/trigger_emergency_stop`);
a call answers once it took effect, and an enable call is passed on on /dbp/enable for the policy node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dbp_control.core.channels import CHANNELS, SERVICES, command_channel
from dbp_control.core.command.controller import CommandController
from dbp_control.core.command.safety import DEFAULT_LIMITS_FILE, SafetyFilter, load_joint_limits
from dbp_control.core.data.bags import (
    float64_array_msg,
    joint_trajectory_msg,
    stamp_ns_of,
    trajectory_positions,
    typestore,
)
from dbp_control.core.layout import ROBOT_JOINTS, SIDES, joint_names
from dbp_control.middleware.port import Node
from dbp_control.nodes.scheduling import use_realtime_priority

NAME = "dual_arm_command"
DEFAULTS: dict[str, Any] = {
    "rate_hz": CHANNELS["left_arm_command"].rate_hz,  # commands per second to each arm, as recorded
    "command_type": "position",  # position: forward_position_controller; trajectory: joint_trajectory_controller
    "watchdog_s": 0.2,  # hold when observations or actions are older than this
    "blend_s": 0.05,  # a newer chunk takes over within this time
    "commit_steps": 8,  # chunk steps followed before switching to the newest chunk (the policy's n_action_steps)
    "joint_limits_file": "",  # empty: calibration/joint_limits.yaml of the package
    "enabled": True,  # False: send nothing until true arrives on /dbp/enable
    "latency_window_s": 10.0,  # the status reports observation-to-command latencies over this window
    "realtime_priority": 45,  # SCHED_FIFO priority of the streaming loop (0: normal), above the policy's
}


class DualArmCommand:
    def __init__(self, node: Node) -> None:
        self.node = node
        p = self.params = node.parameters(DEFAULTS)
        arm_channels = {side: command_channel(side, p["command_type"]) for side in SIDES}  # a bad type fails first
        limits = load_joint_limits(ROBOT_JOINTS, Path(p["joint_limits_file"]) if p["joint_limits_file"] else DEFAULT_LIMITS_FILE)
        self.controller = CommandController(SafetyFilter(limits, p["rate_hz"]), rate_hz=p["rate_hz"],
                                            watchdog_s=p["watchdog_s"], blend_s=p["blend_s"], commit_steps=p["commit_steps"],
                                            enabled=p["enabled"], latency_window_s=p["latency_window_s"])
        self.types = typestore(node.distro).types
        self.arms = {side: node.publisher(channel) for side, channel in arm_channels.items()}
        self.status_publisher = node.publisher(CHANNELS["command_status"])
        self.enable_publisher = node.publisher(CHANNELS["enable"])
        self._joint_order: list[int] | None = None
        node.subscribe(CHANNELS["joint_states"], self.on_joint_state)
        node.subscribe(CHANNELS["action_chunk"], self.on_chunk)
        node.subscribe(CHANNELS["emergency_stop"], lambda msg: msg.data and self.emergency_stop())
        node.subscribe(CHANNELS["enable"], lambda msg: self.controller.set_enabled(bool(msg.data), node.now_ns()))
        node.service(SERVICES["set_enabled"], self.on_set_enabled)
        node.service(SERVICES["trigger_emergency_stop"], self.on_trigger_emergency_stop)
        node.timer(1.0 / p["rate_hz"], self.tick)
        node.timer(1.0 / CHANNELS["command_status"].rate_hz, self.publish_status)
        self.realtime_priority = use_realtime_priority(p["realtime_priority"], node.logger)

    def emergency_stop(self) -> None:
        self.controller.emergency_stop()
        self.node.logger.warning("emergency stop: holding position until re-enabled")

    def on_set_enabled(self, request: Any) -> Any:
        enabled = bool(request.data)
        self.controller.set_enabled(enabled, self.node.now_ns())
        self.enable_publisher.publish(self.types["std_msgs/msg/Bool"](data=enabled))  # the policy restarts its plans
        return self.types["std_srvs/srv/SetBool_Response"](success=True, message="enabled" if enabled else "disabled")

    def on_trigger_emergency_stop(self, _request: Any) -> Any:
        self.emergency_stop()
        return self.types["std_srvs/srv/Trigger_Response"](success=True,
                                                           message="emergency stop: holding until enabled again")

    def on_joint_state(self, msg: Any) -> None:
        names = list(msg.name)
        if self._joint_order is None or len(names) != len(self._joint_order):
            missing = [j for j in ROBOT_JOINTS if j not in names]
            if missing:
                self.node.logger.warning("joint state without %s ignored", missing)
                return
            self._joint_order = [names.index(j) for j in ROBOT_JOINTS]
        self.controller.on_joint_state(np.asarray(msg.position, dtype=np.float64)[self._joint_order], self.node.now_ns())

    def on_chunk(self, msg: Any) -> None:
        try:
            actions, step = trajectory_positions(msg, ROBOT_JOINTS)
        except ValueError as exc:
            self.controller.status.chunks_rejected += 1
            self.controller.status.last_rejection = str(exc)
            self.node.logger.warning("rejected chunk: %s", exc)
            return
        now = self.node.now_ns()
        reason = self.controller.on_chunk(actions, stamp_ns_of(msg), step, now)
        if reason is not None:
            self.node.logger.warning("rejected chunk: %s", reason)
        elif self.controller.wants_newest(now):
            self.tick()  # act on a plan that is due now instead of waiting up to a command period

    def tick(self) -> None:
        now = self.node.now_ns()
        command = self.controller.tick(now)
        if command is None:
            return
        for i, side in enumerate(SIDES):
            values = command[7 * i : 7 * i + 7]
            if self.params["command_type"] == "position":
                self.arms[side].publish(float64_array_msg(self.node.distro, values))
            else:  # stamp 0: the controller starts the point on arrival
                self.arms[side].publish(joint_trajectory_msg(self.node.distro, 0, "", joint_names(side), values[None],
                                                             0.0, first_s=1.0 / self.params["rate_hz"]))

    def status(self) -> dict[str, Any]:
        s, report = self.controller.status, self.controller.safety.report
        now = self.node.now_ns()
        return {"holding": s.holding, "reason": s.reason, "enabled": self.controller.enabled,
                "realtime_priority": self.realtime_priority,
                "estopped": self.controller.estopped, "chunks_accepted": s.chunks_accepted,
                "chunks_rejected": s.chunks_rejected, "chunks_before_enable": s.chunks_before_enable,
                "last_rejection": s.last_rejection, "holds": s.holds,
                "clamped_position": report.clamped_position, "limited_velocity": report.limited_velocity,
                # observation stamp -> the first command from its chunk; -> its chunk's arrival (every chunk)
                "obs_to_command_ms": self.controller.switch_latency.summary(now),
                "obs_to_chunk_arrival_ms": self.controller.arrival_latency.summary(now)}

    def publish_status(self) -> None:
        self.status_publisher.publish(self.types["std_msgs/msg/String"](data=json.dumps(self.status())))
