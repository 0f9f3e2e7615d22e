"""dbp_control: a real-time ROS 2 control stack for one-step Drift-Based Policies."""

from dbp_control.core.observation.sync import ApproximateTimeSync
from dbp_control.core.policies.dbp.drift import drift_loss

__all__ = ["ApproximateTimeSync", "drift_loss"]
__version__ = "0.1.0"
