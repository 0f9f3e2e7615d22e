"""Gymnasium environment over the simulated tasks: the action is the robot's command (14 joint position
targets: per arm six joints and a gripper closure), observations are joint states with either the
poses of the movable objects (`state`, privileged: only a simulation knows them) or the three cameras
(`image`)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dbp_control.core.layout import CAMERAS, SIDES
from dbp_control.core.sim.robot import DualArmSim
from dbp_control.core.sim.scene import MOVABLE_OBJECTS
from dbp_control.core.sim.tasks import make_task

OBS_TYPES = ("state", "image")


class DualArmEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, task: str = "lift", *, obs_type: str = "state", image_size: tuple[int, int] = (96, 96),
                 control_hz: float = 50.0, max_seconds: float = 8.0, render_mode: str | None = None) -> None:
        if obs_type not in OBS_TYPES:
            raise ValueError(f"unknown obs_type {obs_type!r}; known: {list(OBS_TYPES)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}; supported: rgb_array")
        self.task = make_task(task)
        self.sim = DualArmSim(image_size=image_size)
        self.obs_type, self.control_dt, self.max_seconds = obs_type, 1.0 / control_hz, max_seconds
        self.render_mode = render_mode
        n = len(self.sim.names)
        arm_limit = np.array([np.pi if "elbow" in name else 2 * np.pi for name in self.sim.names])
        gripper = np.array([name.endswith("gripper_joint") for name in self.sim.names])
        self.action_space = spaces.Box(np.where(gripper, 0.0, -arm_limit), np.where(gripper, 1.0, arm_limit),
                                       (n,), np.float64)
        joints = spaces.Box(-np.inf, np.inf, (2 * n,), np.float64)  # positions, then velocities
        if obs_type == "state":
            objects = spaces.Box(-np.inf, np.inf, (7 * len(MOVABLE_OBJECTS),), np.float64)  # per object: xyz, wxyz
            self.observation_space = spaces.Dict({"joints": joints, "objects": objects})
        else:
            height, width = image_size
            self.observation_space = spaces.Dict({
                "joints": joints,
                "images": spaces.Dict({cam: spaces.Box(0, 255, (3, height, width), np.uint8) for cam in CAMERAS}),
            })

    def _observation(self) -> dict[str, Any]:
        state = self.sim.joint_state()
        obs: dict[str, Any] = {"joints": np.concatenate([state.position, state.velocity])}
        if self.obs_type == "state":
            obs["objects"] = self.sim.object_poses().reshape(-1)
        else:
            obs["images"] = {cam: np.ascontiguousarray(self.sim.render(cam).transpose(2, 0, 1)) for cam in CAMERAS}
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        task_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        self.task.reset(self.sim, task_seed)
        return self._observation(), {"task_seed": task_seed}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape} "
                             f"({len(SIDES)} arms x 6 joints + gripper), got {action.shape}")
        self.sim.set_targets(action)  # rejects NaN / inf with a named error
        self.sim.step(self.control_dt)
        self.task.observe(self.sim)
        success = self.task.success(self.sim)
        truncated = self.sim.time >= self.max_seconds - 1e-9
        return self._observation(), self.task.reward(self.sim), success, truncated, {"success": success}

    def render(self) -> np.ndarray | None:
        return self.sim.render("head") if self.render_mode == "rgb_array" else None
