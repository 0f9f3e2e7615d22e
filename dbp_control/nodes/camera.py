"""A RealSense camera node: colour (and optionally depth aligned to colour) as sensor_msgs/Image with the
CameraInfo of calibration/<camera>_camera.yaml, on the topics of the channel table.

Frames are stamped in the device's global time domain (the camera clock mapped to the host clock), so
the three cameras and the joint states can be synchronised. The device is looked up first: without it
the node stops with a message naming the serial, instead of blocking in `pipeline.start()`.
Users of the vendor's `realsense2_camera` node can remap instead: its `/<camera>/color/image_raw`
and `/<camera>/color/camera_info` match these topics with `camera_name:=<camera>_camera`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dbp_control.core.calibration import load_camera_intrinsics
from dbp_control.core.channels import CHANNELS
from dbp_control.core.data.bags import camera_info_msg, header, typestore
from dbp_control.core.layout import CAMERAS
from dbp_control.middleware.port import Node

DEFAULTS: dict[str, Any] = {
    "camera": "head",  # left_wrist | right_wrist | head: names the topics and the calibration file
    "serial": "",  # the device's serial number; empty: the only connected device
    "width": 640,
    "height": 480,
    "fps": 30,
    "depth": False,  # also stream depth aligned to colour (16UC1, mm) on .../aligned_depth_to_color/image_raw
}


class CameraError(RuntimeError):
    """No usable camera: the library, the device or the calibration is missing."""


def import_realsense() -> Any:
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise CameraError("pyrealsense2 is not importable: pip install 'dbp_control[realsense]' and "
                          f"apt-get install libusb-1.0-0 ({exc})") from exc
    return rs


def find_device(rs: Any, serial: str) -> str:
    """The serial of the device to open; a clear error when it is not connected."""
    serials = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
    if not serials:
        raise CameraError("no RealSense device is connected")
    if serial and serial not in serials:
        raise CameraError(f"RealSense {serial} is not connected; connected: {serials}")
    if not serial and len(serials) > 1:
        raise CameraError(f"several RealSense devices are connected ({serials}); set the serial parameter")
    return serial or serials[0]


class RealSenseCamera:
    def __init__(self, node: Node) -> None:
        self.node = node
        p = self.params = node.parameters(DEFAULTS)
        if p["camera"] not in CAMERAS:
            raise CameraError(f"unknown camera {p['camera']!r}; cameras: {list(CAMERAS)}")
        self.intrinsics = load_camera_intrinsics(p["camera"]).scaled(p["width"], p["height"])
        rs = self.rs = import_realsense()
        serial = find_device(rs, p["serial"])
        config = rs.config()
        config.enable_device(serial)
        config.enable_stream(rs.stream.color, p["width"], p["height"], rs.format.rgb8, p["fps"])
        if p["depth"]:
            config.enable_stream(rs.stream.depth, p["width"], p["height"], rs.format.z16, p["fps"])
            self.align = rs.align(rs.stream.color)
        self.pipeline = rs.pipeline()
        profile = self.pipeline.start(config)
        for sensor in profile.get_device().query_sensors():
            if sensor.supports(rs.option.global_time_enabled):
                sensor.set_option(rs.option.global_time_enabled, 1)
        self.image = CHANNELS[f"{p['camera']}_image"]
        self.info = CHANNELS[f"{p['camera']}_camera_info"]
        self.image_publisher = node.publisher(self.image)
        self.info_publisher = node.publisher(self.info)
        self.depth = CHANNELS[f"{p['camera']}_depth"]
        self.depth_publisher = node.publisher(self.depth) if p["depth"] else None
        self._image_type = typestore(node.distro).types["sensor_msgs/msg/Image"]
        node.timer(0.5 / p["fps"], self.poll)
        node.logger.info("RealSense %s streaming %dx%d at %d fps as %s", serial, p["width"], p["height"], p["fps"],
                         p["camera"])

    def poll(self) -> None:
        frames = self.pipeline.poll_for_frames()
        if not frames:
            return
        if self.params["depth"]:
            frames = self.align.process(frames)
        color = frames.get_color_frame()
        if not color:
            return
        stamp = int(color.get_timestamp() * 1e6)  # ms in the global time domain -> ns
        rgb = np.asanyarray(color.get_data())
        height, width = rgb.shape[:2]
        self.image_publisher.publish(self._image_type(
            header=header(self.node.distro, stamp, self.image.frame_id), height=height, width=width, encoding="rgb8",
            is_bigendian=0, step=width * 3, data=rgb.reshape(-1)))
        self.info_publisher.publish(camera_info_msg(self.node.distro, stamp, self.info.frame_id, self.intrinsics))
        depth = frames.get_depth_frame() if self.depth_publisher is not None else None
        if depth:
            z16 = np.asanyarray(depth.get_data())
            self.depth_publisher.publish(self._image_type(  # type: ignore[union-attr]
                header=header(self.node.distro, stamp, self.image.frame_id), height=height, width=width,
                encoding="16UC1", is_bigendian=0, step=width * 2, data=z16.view(np.uint8).reshape(-1)))
