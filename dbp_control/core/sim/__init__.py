"""The MuJoCo dual-arm simulation: scene, robot, tasks, experts, recorder, environments."""

import os
import sys

# Software rendering unless the user chose a backend. MuJoCo reads this once, when it is first imported,
# so it is set here, before any module of this package imports mujoco.
RENDERER_UNSET_AT_MUJOCO_IMPORT = "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
