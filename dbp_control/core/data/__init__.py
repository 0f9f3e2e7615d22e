"""Recorded data: rosbag2 episodes (and, with issue #3, the bag -> dataset compiler)."""
