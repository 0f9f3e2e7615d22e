"""The simulated dual-arm robot with the real robot's control interface: per arm, six joint position
targets and a gripper target (0 open .. 1 closed) in; joint positions and velocities out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dbp_control.core.calibration import CameraIntrinsics, load_camera_intrinsics
from dbp_control.core.layout import CAMERAS, ROBOT_JOINTS, SIDES
from dbp_control.core.sim import RENDERER_UNSET_AT_MUJOCO_IMPORT
from dbp_control.core.sim.ik import SiteIK
from dbp_control.core.sim.scene import GRIPPER_STROKE, MOVABLE_OBJECTS, build_scene_xml

# the classic UR "up" pose, with the forearm horizontal over the table
HOME_ARM = np.array([0.0, -1.2, 1.6, -1.97, -1.5708, 0.0])


@dataclass(frozen=True)
class JointState:
    names: list[str]
    position: np.ndarray  # rad for arm joints, 0 (open) .. 1 (closed) for grippers
    velocity: np.ndarray


class DualArmSim:
    def __init__(self, *, physics_hz: float = 500.0, image_size: tuple[int, int] = (96, 96)) -> None:
        import mujoco

        self._mj = mujoco
        height, width = image_size
        # the cameras see what the calibrated real ones see, at the rendered resolution
        self.intrinsics: dict[str, CameraIntrinsics] = {
            cam: load_camera_intrinsics(cam).scaled(width, height) for cam in CAMERAS
        }
        fovy = {cam: i.fovy_deg for cam, i in self.intrinsics.items()}
        self.model = mujoco.MjModel.from_xml_string(build_scene_xml(fovy, timestep=1.0 / physics_hz))
        self.data = mujoco.MjData(self.model)
        self.names = list(ROBOT_JOINTS)
        self._qpos = np.array([self.model.jnt_qposadr[self._joint(n)] for n in self.names])
        self._qvel = np.array([self.model.jnt_dofadr[self._joint(n)] for n in self.names])
        self._mirror_qpos = np.array([self.model.jnt_qposadr[self._joint(f"{s}_gripper_mirror_joint")] for s in SIDES])
        self._is_gripper = np.array([n.endswith("gripper_joint") for n in self.names])
        self._actuator = np.array([self._actuator_id(n) for n in self.names])
        self._mirror_actuator = np.array([self._actuator_id(f"{s}_gripper_mirror_joint") for s in SIDES])
        self.image_size = image_size
        self._cameras = _Cameras(mujoco, self.model, image_size)
        self.reset()

    def _joint(self, name: str) -> int:
        return self._mj.mj_name2id(self.model, self._mj.mjtObj.mjOBJ_JOINT, name)

    def _actuator_id(self, name: str) -> int:
        index = self._mj.mj_name2id(self.model, self._mj.mjtObj.mjOBJ_ACTUATOR, name)
        if index < 0:
            raise KeyError(f"no actuator {name!r} in the scene")
        return index

    @property
    def time(self) -> float:
        return float(self.data.time)

    def reset(self) -> None:
        self._mj.mj_resetData(self.model, self.data)
        home = np.concatenate([HOME_ARM, [0.0]] * len(SIDES))
        self.data.qpos[self._qpos] = np.where(self._is_gripper, GRIPPER_STROKE * (1 - home), home)
        self.data.qpos[self._mirror_qpos] = GRIPPER_STROKE
        self.set_targets(home)
        self._mj.mj_forward(self.model, self.data)

    def set_targets(self, targets: np.ndarray) -> None:
        """targets: [14] = per arm (left, then right) six joint angles and a gripper closure in [0, 1]."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.shape != (len(self.names),):
            raise ValueError(f"expected {len(self.names)} targets ({', '.join(self.names)}), got shape {targets.shape}")
        if not np.isfinite(targets).all():
            raise ValueError("joint targets contain NaN or inf")
        closure = np.clip(targets[self._is_gripper], 0.0, 1.0)
        ctrl = targets.copy()
        ctrl[self._is_gripper] = GRIPPER_STROKE * (1 - closure)
        self.data.ctrl[self._actuator] = ctrl
        self.data.ctrl[self._mirror_actuator] = GRIPPER_STROKE * (1 - closure)

    def step(self, seconds: float) -> None:
        for _ in range(max(1, round(seconds / self.model.opt.timestep))):
            self._mj.mj_step(self.model, self.data)

    def joint_state(self) -> JointState:
        position = self.data.qpos[self._qpos].copy()
        velocity = self.data.qvel[self._qvel].copy()
        position[self._is_gripper] = 1 - position[self._is_gripper] / GRIPPER_STROKE
        velocity[self._is_gripper] = -velocity[self._is_gripper] / GRIPPER_STROKE
        return JointState(self.names, position, velocity)

    def arm_ik(self, side: str) -> SiteIK:
        """Differential IK for one arm's tool centre point (`<side>_tcp`) over its six arm joints."""
        if side not in SIDES:
            raise ValueError(f"unknown arm {side!r}; arms: {list(SIDES)}")
        arm = [i for i, n in enumerate(self.names) if n.startswith(f"{side}_") and not self._is_gripper[i]]
        return SiteIK(self.model, self.data, f"{side}_tcp", self._qpos[arm], self._qvel[arm])

    def site_position(self, site: str) -> np.ndarray:
        return self.data.site(site).xpos.copy()

    def object_position(self, body: str) -> np.ndarray:
        return self.data.body(body).xpos.copy()

    def object_poses(self) -> np.ndarray:
        """[len(MOVABLE_OBJECTS), 7]: position and quaternion (w, x, y, z) of each movable object."""
        return np.stack([np.concatenate([self.data.body(b).xpos, self.data.body(b).xquat]) for b in MOVABLE_OBJECTS])

    def object_yaw(self, body: str) -> float:
        """Rotation about the vertical of an object placed by `set_object_pose` (and not tipped over)."""
        w, _, _, z = self.data.body(body).xquat
        return float(2 * np.arctan2(z, w))

    def set_object_pose(self, body: str, position: np.ndarray, yaw: float) -> None:
        """Place a free-floating object (at rest) at `position`, rotated `yaw` about the vertical."""
        joint = self.model.body(body).jntadr[0]
        adr, dof = self.model.jnt_qposadr[joint], self.model.jnt_dofadr[joint]
        self.data.qpos[adr : adr + 7] = [*position, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qvel[dof : dof + 6] = 0.0
        self._mj.mj_forward(self.model, self.data)

    def render(self, camera: str) -> np.ndarray:
        """uint8 [H, W, 3] RGB from one of CAMERAS."""
        return self._cameras.draw(self.data, camera)


class _Cameras:
    """One MuJoCo renderer for the scene's cameras: an OpenGL context, made on first use."""

    def __init__(self, mj: Any, model: Any, image_size: tuple[int, int]) -> None:
        self._mj, self._model, self._image_size = mj, model, image_size
        self._renderer: Any = None

    def draw(self, data: Any, camera: str) -> np.ndarray:
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; cameras: {list(CAMERAS)}")
        if self._renderer is None:
            if RENDERER_UNSET_AT_MUJOCO_IMPORT:  # mujoco picked its default (a window system) and would abort
                raise RuntimeError("mujoco was imported before dbp_control.core.sim chose a renderer; import "
                                   "dbp_control.core.sim first or set MUJOCO_GL=osmesa (or egl)")
            height, width = self._image_size
            self._renderer = self._mj.Renderer(self._model, height, width)
        self._renderer.update_scene(data, camera)
        return self._renderer.render()


class CameraView:
    """The cameras of a `DualArmSim`'s scene drawn from a saved configuration (a copy of its `data.qpos`), with
    their own MjData and renderer: a node renders on a worker thread while its executor steps the physics on.
    One view is for one thread (its OpenGL context is current on one thread at a time)."""

    def __init__(self, sim: DualArmSim) -> None:
        self._mj, self._model = sim._mj, sim.model
        self._data = sim._mj.MjData(sim.model)
        self._cameras = _Cameras(sim._mj, sim.model, sim.image_size)

    def render(self, camera: str, qpos: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] RGB from one of CAMERAS, of the scene posed at `qpos`."""
        self._data.qpos[:] = qpos
        self._mj.mj_kinematics(self._model, self._data)  # bodies, geoms and sites
        self._mj.mj_camlight(self._model, self._data)  # the cameras, wrist cameras included, and lights
        return self._cameras.draw(self._data, camera)
