"""The dual-arm scene as MJCF, written here (no model downloads): two UR5 arms with parallel grippers on
a table, a cube, a wrist camera on each arm and one head camera.

Arm kinematics follow the public UR5 parameters (d1 = 0.089159, a2 = 0.425, a3 = 0.39225,
d4 = 0.10915, d5 = 0.09465, d6 = 0.0823), laid out joint by joint as in Universal Robots' description
package. Arm links are visual only (no contacts); fingers, table and objects collide.
"""

from __future__ import annotations

from collections.abc import Mapping

from dbp_control.core.layout import ARM_JOINTS, CAMERAS, SIDES

GRIPPER_STROKE = 0.04  # m per finger, fully open
ROT_Y_90 = "0.7071068 0 0.7071068 0"  # rpy (0, pi/2, 0)
TOOL_Z_ALONG_Y = "0.7071068 -0.7071068 0 0"  # the flange's approach axis (z) along wrist_3's y
BOX_POS = (0.0, 0.72)  # an open box at the back of the table, with a lid (transport)
BOX_INNER = 0.07  # half inner width
BOX_WALL = 0.005  # half wall thickness
BOX_HEIGHT = 0.08
MOVABLE_OBJECTS: tuple[str, ...] = ("cube", "lid")  # free bodies, in the order their poses are reported
BASE_X = 0.35  # each arm's base this far left / right of the table centre
BASE_FACING_FORWARD = "0.7071068 0 0 0.7071068"  # yaw 90 deg: at shoulder_pan = 0 the arm reaches over the table (+y)


def _arm(side: str, x: float, wrist_fovy: float) -> str:
    p = f"{side}_"
    link = 'type="capsule" size="0.045" class="link"'
    return f"""
    <body name="{p}base_link" pos="{x} 0 0" quat="{BASE_FACING_FORWARD}">
      <geom type="cylinder" size="0.075 0.04" pos="0 0 0.04" class="link"/>
      <body name="{p}shoulder_link" pos="0 0 0.089159" gravcomp="1">
        <joint name="{p}shoulder_pan_joint" axis="0 0 1" range="-6.2832 6.2832" class="big"/>
        <geom {link} fromto="0 0 -0.05 0 0 0.05"/>
        <body name="{p}upper_arm_link" pos="0 0.13585 0" quat="{ROT_Y_90}" gravcomp="1">
          <joint name="{p}shoulder_lift_joint" axis="0 1 0" range="-6.2832 6.2832" class="big"/>
          <geom {link} fromto="0 0 0 0 0 0.425"/>
          <body name="{p}forearm_link" pos="0 -0.1197 0.425" gravcomp="1">
            <joint name="{p}elbow_joint" axis="0 1 0" range="-3.1416 3.1416" class="big"/>
            <geom type="capsule" size="0.035" class="link" fromto="0 0 0 0 0 0.39225"/>
            <body name="{p}wrist_1_link" pos="0 0 0.39225" quat="{ROT_Y_90}" gravcomp="1">
              <joint name="{p}wrist_1_joint" axis="0 1 0" range="-6.2832 6.2832" class="small"/>
              <geom type="cylinder" size="0.035 0.04" class="link" quat="0.7071068 0.7071068 0 0"/>
              <body name="{p}wrist_2_link" pos="0 0.093 0" gravcomp="1">
                <joint name="{p}wrist_2_joint" axis="0 0 1" range="-6.2832 6.2832" class="small"/>
                <geom type="cylinder" size="0.035 0.04" class="link"/>
                <body name="{p}wrist_3_link" pos="0 0 0.09465" gravcomp="1">
                  <joint name="{p}wrist_3_joint" axis="0 1 0" range="-6.2832 6.2832" class="small"/>
                  <geom type="cylinder" size="0.035 0.02" class="link" quat="0.7071068 0.7071068 0 0"/>
                  <body name="{p}flange" pos="0 0.0823 0" quat="{TOOL_Z_ALONG_Y}" gravcomp="1">
                    <geom type="box" size="0.045 0.02 0.025" pos="0 0 0.025" class="link"/>
                    <camera name="{p}wrist" pos="0 -0.07 0.03" xyaxes="1 0 0 0 -0.966 0.26" fovy="{wrist_fovy}"/>
                    <body name="{p}finger_a" pos="0 0 0.06" gravcomp="1">
                      <joint name="{p}gripper_joint" type="slide" axis="1 0 0" range="0 {GRIPPER_STROKE}" class="finger"/>
                      <geom type="box" size="0.008 0.012 0.03" pos="0.01 0 0.03" class="pad"/>
                    </body>
                    <body name="{p}finger_b" pos="0 0 0.06" gravcomp="1">
                      <joint name="{p}gripper_mirror_joint" type="slide" axis="-1 0 0" range="0 {GRIPPER_STROKE}" class="finger"/>
                      <geom type="box" size="0.008 0.012 0.03" pos="-0.01 0 0.03" class="pad"/>
                    </body>
                    <site name="{p}tcp" pos="0 0 0.1" size="0.005"/>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def _actuators(side: str) -> str:
    p = f"{side}_"
    arm = "".join(
        f'    <position name="{p}{j}" joint="{p}{j}" class="{"big" if i < 3 else "small"}"/>\n'
        for i, j in enumerate(ARM_JOINTS)
    )
    fingers = (f'    <position name="{p}gripper_joint" joint="{p}gripper_joint" class="finger"/>\n'
               f'    <position name="{p}gripper_mirror_joint" joint="{p}gripper_mirror_joint" class="finger"/>\n')
    return arm + fingers


def build_scene_xml(fovy_deg: Mapping[str, float], *, timestep: float = 0.002) -> str:
    """MJCF of the whole scene, with each camera's vertical field of view (degrees) from its calibration.
    Shadows and reflections are off: they cost 10-20x on a software renderer."""
    missing = sorted(set(CAMERAS) - set(fovy_deg))
    if missing:
        raise ValueError(f"no field of view for cameras {missing}")
    arms = "".join(_arm(side, x, fovy_deg[f"{side}_wrist"]) for side, x in zip(SIDES, (-BASE_X, BASE_X)))
    actuators = "".join(_actuators(side) for side in SIDES)
    return f"""<mujoco model="dbp_dual_ur5">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast"/>
  <visual><quality shadowsize="0"/><global offwidth="1280" offheight="960"/></visual>
  <default>
    <geom density="1500" rgba="0.7 0.7 0.75 1"/>
    <default class="link"><geom contype="0" conaffinity="0" rgba="0.55 0.6 0.68 1"/></default>
    <default class="pad"><geom friction="1.5 0.02 0.001" rgba="0.15 0.15 0.15 1"/></default>
    <default class="big"><joint damping="40" armature="0.1"/><position kp="3000" forcerange="-150 150"/></default>
    <default class="small"><joint damping="8" armature="0.05"/><position kp="600" forcerange="-28 28"/></default>
    <default class="finger"><joint damping="5" armature="0.01"/><position kp="400" forcerange="-60 60"/></default>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.55 0.45 0.35" rgb2="0.5 0.4 0.3" width="256" height="256"/>
    <material name="table" texture="grid" texrepeat="6 6" reflectance="0"/>
  </asset>
  <worldbody>
    <light pos="0 0.3 2.5" dir="0 0 -1" castshadow="false" diffuse="0.8 0.8 0.8"/>
    <light pos="0 -1 2" dir="0 0.5 -1" castshadow="false" diffuse="0.4 0.4 0.4"/>
    <geom name="table" type="box" size="0.9 0.6 0.02" pos="0 0.35 -0.02" material="table"/>
    <camera name="head" pos="0 -0.45 0.95" xyaxes="1 0 0 0 0.64 0.77" fovy="{fovy_deg['head']}"/>
    {arms}
    <body name="box" pos="{BOX_POS[0]} {BOX_POS[1]} 0">
      <geom type="box" size="{BOX_INNER + BOX_WALL} {BOX_INNER + BOX_WALL} 0.005" pos="0 0 0.005" rgba="0.3 0.45 0.7 1"/>
      <geom type="box" size="{BOX_WALL} {BOX_INNER + BOX_WALL} {BOX_HEIGHT / 2}" pos="{BOX_INNER + BOX_WALL} 0 {BOX_HEIGHT / 2}" rgba="0.3 0.45 0.7 1"/>
      <geom type="box" size="{BOX_WALL} {BOX_INNER + BOX_WALL} {BOX_HEIGHT / 2}" pos="{-(BOX_INNER + BOX_WALL)} 0 {BOX_HEIGHT / 2}" rgba="0.3 0.45 0.7 1"/>
      <geom type="box" size="{BOX_INNER} {BOX_WALL} {BOX_HEIGHT / 2}" pos="0 {BOX_INNER + BOX_WALL} {BOX_HEIGHT / 2}" rgba="0.3 0.45 0.7 1"/>
      <geom type="box" size="{BOX_INNER} {BOX_WALL} {BOX_HEIGHT / 2}" pos="0 {-(BOX_INNER + BOX_WALL)} {BOX_HEIGHT / 2}" rgba="0.3 0.45 0.7 1"/>
    </body>
    <body name="lid" pos="{BOX_POS[0]} {BOX_POS[1]} {BOX_HEIGHT + 0.006}">
      <freejoint name="lid_joint"/>
      <geom type="box" size="{BOX_INNER + 2 * BOX_WALL} {BOX_INNER + 2 * BOX_WALL} 0.005" density="300" rgba="0.9 0.8 0.3 1"/>
      <geom name="knob" type="box" size="0.015 0.015 0.02" pos="0 0 0.025" density="300" rgba="0.9 0.6 0.2 1" friction="1.2 0.02 0.001"/>
    </body>
    <body name="cube" pos="0 0.5 0.025">
      <freejoint name="cube_joint"/>
      <geom name="cube" type="box" size="0.025 0.025 0.025" rgba="0.85 0.2 0.2 1" density="400" friction="1.2 0.02 0.001"/>
    </body>
  </worldbody>
  <actuator>
{actuators}  </actuator>
</mujoco>
"""
