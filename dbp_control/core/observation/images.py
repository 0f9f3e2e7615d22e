"""Camera frames as the policy sees them: decoded from sensor_msgs/Image and resized. The observation
node and the dataset compiler both call these, so training images are made exactly as live ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ENCODINGS = ("rgb8", "bgr8")  # what RealSense colour streams and the simulator publish


class ImageError(ValueError):
    """A frame that cannot be used: unsupported encoding, inconsistent size or step."""


def decode_image(msg: Any, *, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/msg/Image (rgb8 or bgr8) -> uint8 [H, W, 3] RGB, a view of the message's buffer when
    it is already RGB. `expected_size` (height, width) rejects frames of another size."""
    if msg.encoding not in ENCODINGS:
        raise ImageError(f"image encoding {msg.encoding!r} is not supported; expected one of {list(ENCODINGS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if expected_size is not None and (height, width) != tuple(expected_size):
        raise ImageError(f"image is {height}x{width}, expected {expected_size[0]}x{expected_size[1]}")
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < 3 * width or data.size != step * height:
        raise ImageError(f"image data of {data.size} bytes does not match {height}x{width} with step {step}")
    rgb = data.reshape(height, step)[:, : 3 * width].reshape(height, width, 3)
    return rgb[..., ::-1] if msg.encoding == "bgr8" else rgb


def resize_rgb(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [..., H, W, 3] -> uint8 [..., height, width, 3], antialiased bilinear (area-like when shrinking)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ImageError(f"frames must be uint8 [..., H, W, 3], got {frames.dtype} {frames.shape}")
    height, width = size
    if frames.shape[-3:-1] == (height, width):
        return frames
    lead = frames.shape[:-3]
    # uint8 in channels-last memory takes torch's integer antialiasing kernel: 8x faster than going through
    # float32 at 640x480 (0.16 against 1.2 ms), within one grey level of it
    frames = np.ascontiguousarray(frames) if frames.flags.writeable else frames.copy()  # torch wants writable memory
    x = torch.from_numpy(frames.reshape(-1, *frames.shape[-3:])).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy()).reshape(*lead, height, width, 3)
