"""Camera intrinsics in the ROS camera_calibration YAML format: loaded, validated, scaled."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dbp_control.core.paths import CALIBRATION_DIR
from dbp_control.core.yaml_files import load_mapping


class CalibrationError(ValueError):
    """A calibration file that is missing or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class CameraIntrinsics:
    name: str
    width: int
    height: int
    k: np.ndarray  # [3, 3]
    distortion_model: str
    d: np.ndarray
    r: np.ndarray  # [3, 3]
    p: np.ndarray  # [3, 4]

    @property
    def fovy_deg(self) -> float:
        return math.degrees(2 * math.atan(self.height / (2 * self.k[1, 1])))

    def scaled(self, width: int, height: int) -> CameraIntrinsics:
        """The same camera at another resolution (focal lengths and centre scale with the image)."""
        sx, sy = width / self.width, height / self.height
        scale = np.diag([sx, sy, 1.0])
        return replace(self, width=width, height=height, k=scale @ self.k, p=scale @ self.p)


def _matrix(data: dict, field: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    try:
        block = data[field]
        values = np.asarray(block["data"], dtype=np.float64)
        rows, cols = int(block["rows"]), int(block["cols"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{path}: field {field!r} is missing or malformed ({exc})") from exc
    if (rows, cols) != shape or values.size != rows * cols:
        raise CalibrationError(f"{path}: {field} must be {shape[0]}x{shape[1]}, got {rows}x{cols} with {values.size} values")
    return values.reshape(shape)


def load_camera_intrinsics(camera: str, directory: Path = CALIBRATION_DIR) -> CameraIntrinsics:
    path = Path(directory) / f"{camera}_camera.yaml"
    data = load_mapping(path, CalibrationError, f"no calibration for camera {camera!r}: {path} does not exist")
    try:
        width, height = int(data["image_width"]), int(data["image_height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{path}: image_width/image_height missing or not integers ({exc})") from exc
    k = _matrix(data, "camera_matrix", (3, 3), path)
    d_block = data.get("distortion_coefficients") or {}
    d = np.asarray(d_block.get("data", []), dtype=np.float64)
    intrinsics = CameraIntrinsics(
        name=str(data.get("camera_name", camera)), width=width, height=height, k=k,
        distortion_model=str(data.get("distortion_model", "plumb_bob")), d=d,
        r=_matrix(data, "rectification_matrix", (3, 3), path), p=_matrix(data, "projection_matrix", (3, 4), path),
    )
    if width <= 0 or height <= 0 or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise CalibrationError(f"{path}: image size and focal lengths must be positive")
    return intrinsics
