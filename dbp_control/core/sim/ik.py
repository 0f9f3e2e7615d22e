"""Differential inverse kinematics: damped least squares on a MuJoCo site Jacobian.

Works on any MuJoCo version (no mocap welds), and produces what the real robot takes: joint position
targets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # mujoco is imported where it is used, so this module loads without it
    import mujoco


def orientation_error(current: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Rotation vector (small-angle) taking rotation matrix `current` to `desired`."""
    return 0.5 * sum(np.cross(current[:, i], desired[:, i]) for i in range(3))


def tool_down_rotation(yaw: float) -> np.ndarray:
    """Tool z axis pointing at the table, tool x axis at angle `yaw` in the table plane."""
    c, s = np.cos(yaw), np.sin(yaw)
    x = np.array([c, s, 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return np.stack([x, np.cross(z, x), z], axis=1)


def dls_step(jacobian: np.ndarray, error: np.ndarray, damping: float = 0.05) -> np.ndarray:
    """Joint step dq = J^T (J J^T + damping^2 I)^-1 error."""
    jjt = jacobian @ jacobian.T
    return jacobian.T @ np.linalg.solve(jjt + damping**2 * np.eye(len(jjt)), error)


class SiteIK:
    """Joint targets that move one site toward a pose, for the arm joints given by their dof indices."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, site: str, qpos_index: np.ndarray,
                 dof_index: np.ndarray, *, max_joint_step: float = 0.05) -> None:
        import mujoco

        self._mj = mujoco
        self.model, self.data = model, data
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        if self.site < 0:
            raise KeyError(f"no site {site!r} in the model")
        self.qpos_index, self.dof_index = np.asarray(qpos_index), np.asarray(dof_index)
        self.max_joint_step = max_joint_step
        self._jp = np.zeros((3, model.nv))
        self._jr = np.zeros((3, model.nv))

    def targets(self, position: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """Joint targets one bounded step from the current joints toward the site pose."""
        self._mj.mj_jacSite(self.model, self.data, self._jp, self._jr, self.site)
        jacobian = np.vstack([self._jp[:, self.dof_index], self._jr[:, self.dof_index]])
        current = self.data.site_xmat[self.site].reshape(3, 3)
        error = np.concatenate([position - self.data.site_xpos[self.site], orientation_error(current, rotation)])
        dq = np.clip(dls_step(jacobian, error), -self.max_joint_step, self.max_joint_step)
        return self.data.qpos[self.qpos_index] + dq
