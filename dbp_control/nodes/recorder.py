"""The recorder node: the robot's topics of an episode into one rosbag2 per episode, controlled by
/dbp/episode_control ("start [JSON]", "stop", "discard", "success", "failure"). Writing happens on a
background thread (`EpisodeRecorder`), so recording never holds up the control loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbp_control.core.channels import CHANNELS, COMMAND_TYPES, command_channel
from dbp_control.core.data.bags import typestore
from dbp_control.core.data.recorder import EpisodeRecorder, RecorderError
from dbp_control.core.layout import SIDES
from dbp_control.middleware.port import Node

NAME = "recorder"
DEFAULTS: dict[str, Any] = {
    "out_dir": "data/recordings",
    "storage": "mcap",  # mcap | sqlite3
    "compress": False,  # rosbag2 per-message zstd
    "task": "teleop",  # stored in each episode's description unless "start" gives another
    "cameras": "left_wrist,right_wrist,head",
    "object_poses": False,  # simulation only
}


class Recorder:
    def __init__(self, node: Node) -> None:
        self.node = node
        p = self.params = node.parameters(DEFAULTS)
        names = ["joint_states"]
        for cam in (c for c in p["cameras"].split(",") if c):
            names += [f"{cam}_image", f"{cam}_camera_info"]
        if p["object_poses"]:
            names.append("object_poses")
        # the arm commands of either command_type: whichever the command node (or teleoperation) sends
        channels = [CHANNELS[n] for n in names] + [command_channel(side, kind) for side in SIDES for kind in COMMAND_TYPES]
        self.recorder = EpisodeRecorder(Path(p["out_dir"]), {c.topic: c.msg_type for c in channels},
                                        storage=p["storage"], distro=node.distro, compress=p["compress"])
        self.types = typestore(node.distro).types
        for channel in channels:
            node.subscribe(channel, lambda msg, topic=channel.topic: self.on_message(topic, msg))
        node.subscribe(CHANNELS["episode_control"], self.on_control)
        self.status_publisher = node.publisher(CHANNELS["recorder_status"])
        node.timer(1.0 / CHANNELS["recorder_status"].rate_hz, self.publish_status)

    def on_message(self, topic: str, msg: Any) -> None:
        # log time is arrival time, as rosbag2 records it; the header stamp stays inside the message
        self.recorder.write(topic, self.node.now_ns(), msg)

    def on_control(self, msg: Any) -> None:
        command, _, rest = msg.data.strip().partition(" ")
        try:
            if command == "start":
                info = {"task": self.params["task"], **(json.loads(rest) if rest else {})}
                self.node.logger.info("recording %s", self.recorder.start(info))
            elif command == "stop":
                self.node.logger.info("episode %s stopped", self.recorder.stop())
            elif command == "discard":
                self.node.logger.info("episode %s discarded", self.recorder.discard())
            elif command in ("success", "failure"):
                self.recorder.mark_success(command == "success")
            else:
                self.node.logger.warning("unknown episode command %r (start, stop, discard, success, failure)", command)
        except (RecorderError, json.JSONDecodeError) as exc:
            self.node.logger.warning("episode command %r refused: %s", msg.data, exc)

    def publish_status(self) -> None:
        s = self.recorder.stats
        self.status_publisher.publish(self.types["std_msgs/msg/String"](data=json.dumps({
            "recording": self.recorder.recording, "episodes": s.episodes, "saved": s.saved, "last_saved": s.last_saved,
            "written": s.written, "dropped": s.dropped, "discarded": s.discarded, "errors": s.errors[-5:]})))
