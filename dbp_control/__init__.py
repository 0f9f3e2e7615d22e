"""dbp_control: a real-time ROS 2 control stack for one-step Drift-Based Policies."""

from __future__ import annotations

from typing import Any

__all__ = ["ApproximateTimeSync", "drift_loss"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # imported on first use: the engine and the nodes load without torch, which drift_loss needs
    if name == "ApproximateTimeSync":
        from dbp_control.core.observation.sync import ApproximateTimeSync
        return ApproximateTimeSync
    if name == "drift_loss":
        from dbp_control.core.policies.dbp.drift import drift_loss
        return drift_loss
    raise AttributeError(f"module 'dbp_control' has no attribute {name!r}")
