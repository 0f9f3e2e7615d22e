"""The MuJoCo dual-arm simulation (issue #3): scene, robot interface; tasks and experts to follow."""
