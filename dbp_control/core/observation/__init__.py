"""Observation assembly: approximate-time synchronisation of camera and joint-state inputs."""

from dbp_control.core.observation.sync import ApproximateTimeSync, SyncStats

__all__ = ["ApproximateTimeSync", "SyncStats"]
