"""Joint limits and the filter every command passes, whatever the policy asked: finite values only,
positions inside the limits, and no joint moving faster than its velocity limit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dbp_control.core.paths import CALIBRATION_DIR
from dbp_control.core.yaml_files import load_mapping

DEFAULT_LIMITS_FILE = CALIBRATION_DIR / "joint_limits.yaml"


class LimitsError(ValueError):
    """A joint limits file that is missing or malformed; the message names the file and the joint."""


@dataclass(frozen=True)
class JointLimits:
    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray


def load_joint_limits(joints: Sequence[str], path: Path = DEFAULT_LIMITS_FILE) -> JointLimits:
    """Limits for `joints` (in this order) from a YAML file mapping each joint to lower, upper, max_velocity."""
    path = Path(path)
    table = load_mapping(path, LimitsError, f"no joint limits file at {path}").get("joints")
    if not isinstance(table, dict):
        raise LimitsError(f"{path}: expected a 'joints' mapping of joint name -> {{lower, upper, max_velocity}}")
    missing = [j for j in joints if j not in table]
    if missing:
        raise LimitsError(f"{path}: no limits for joint(s) {missing}")
    rows = []
    for joint in joints:
        entry = table[joint]
        try:
            lower, upper, velocity = (float(entry[k]) for k in ("lower", "upper", "max_velocity"))
        except (KeyError, TypeError, ValueError) as exc:
            raise LimitsError(f"{path}: joint {joint!r} needs numeric lower, upper and max_velocity ({exc})") from exc
        if not (np.isfinite([lower, upper, velocity]).all() and lower < upper and velocity > 0):
            raise LimitsError(f"{path}: joint {joint!r} needs lower < upper and max_velocity > 0, "
                              f"got {lower}, {upper}, {velocity}")
        rows.append((lower, upper, velocity))
    lower, upper, velocity = (np.array(column) for column in zip(*rows))
    return JointLimits(tuple(joints), lower, upper, velocity)


@dataclass
class SafetyReport:
    clamped_position: int = 0  # commands that reached a position limit
    limited_velocity: int = 0  # commands slowed to the velocity limit
    rejected: int = 0  # non-finite or wrongly shaped targets: the previous command is held


class SafetyFilter:
    def __init__(self, limits: JointLimits, rate_hz: float) -> None:
        if not rate_hz > 0:
            raise ValueError(f"command rate must be positive, got {rate_hz}")
        self.limits = limits
        self.period_s = 1.0 / rate_hz
        self.report = SafetyReport()

    def apply(self, target: np.ndarray, previous: np.ndarray, dt_s: float | None = None) -> tuple[np.ndarray, str | None]:
        """The command to send `dt_s` after `previous` (itself safe); the reason when `target` was rejected.
        A late tick may make up for one missed period, not more: after a stall the arm does not jump."""
        max_step = self.limits.max_velocity * min(self.period_s if dt_s is None else max(dt_s, 0.0), 2 * self.period_s)
        target = np.asarray(target, dtype=np.float64)
        if target.shape != previous.shape:
            self.report.rejected += 1
            return previous.copy(), f"target has shape {target.shape}, expected {previous.shape}"
        if not np.isfinite(target).all():
            self.report.rejected += 1
            return previous.copy(), "target contains NaN or inf"
        clipped = self.clamp(target)
        step = np.clip(clipped - previous, -max_step, max_step)
        self.report.limited_velocity += int(not np.array_equal(step, clipped - previous))
        # `previous` may be a measured position a hair outside the limits (a gripper's closure reads -0.03)
        return np.clip(previous + step, self.limits.lower, self.limits.upper), None

    def clamp(self, position: np.ndarray) -> np.ndarray:
        """`position` inside the position limits, counted when it was not: a target, or a measured position to
        hold (a measured gripper closure can read a little below 0 or above 1, and a command must not)."""
        clamped = np.clip(position, self.limits.lower, self.limits.upper)
        self.report.clamped_position += int(not np.array_equal(clamped, position))
        return clamped
