"""The package layout: ROS 2 metadata, colcon build of ros2_ws, and the ROS-free core."""

import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "dbp_control" / "core"
FORBIDDEN_IN_CORE = {"rclpy", "zenoh", "message_filters", "launch", "launch_ros", "sensor_msgs", "std_msgs", "trajectory_msgs"}


def test_package_xml_is_format_3_ament_python_with_ros_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "dbp_control"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "trajectory_msgs", "message_filters", "launch_ros"} <= deps


def test_core_never_imports_ros_or_middleware():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN_IN_CORE]
    assert not offenders


def test_workspace_src_reaches_the_package():
    link = ROOT / "ros2_ws" / "src" / "dbp_control"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert (link / "package.xml").resolve() == (ROOT / "package.xml").resolve()


@pytest.mark.skipif(shutil.which("colcon", path=str(Path(sys.executable).parent)) is None
                    and shutil.which("colcon") is None, reason="colcon is not installed")
def test_colcon_build_installs_scripts_and_share_files(tmp_path):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    ws = ROOT / "ros2_ws"
    done = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(ws / "src"),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Finished <<< dbp_control" in done.stdout
    prefix = tmp_path / "install" / "dbp_control"
    assert os.access(prefix / "lib" / "dbp_control" / "dbp", os.X_OK)
    share = prefix / "share" / "dbp_control"
    assert (share / "package.xml").is_file()
    for folder in ("launch", "config", "calibration", "models"):
        assert (share / folder / "README.md").is_file(), folder
    for file in ("launch/sim.launch.py", "config/graph.yaml", "config/modes/sim.yaml", "calibration/joint_limits.yaml",
                 "models/lift_dbp_state/policy.yaml", "models/lift_dbp_state/head.onnx"):
        assert (share / file).is_file(), file  # subfolders are installed too
    for node in ("sim_robot", "policy", "dual_arm_command", "recorder", "camera"):
        assert os.access(prefix / "lib" / "dbp_control" / node, os.X_OK), node
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "dbp_control").is_file()
    # the installed entry point runs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (prefix / "lib").glob("python3*/site-packages"))}
    run = subprocess.run([sys.executable, str(prefix / "lib" / "dbp_control" / "dbp"), "--help"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0 and "bench" in run.stdout
    # the installed package finds its calibration under share/, away from the source tree
    probe = ("import dbp_control.core.calibration as c; "
             "print(c.CALIBRATION_DIR); print(c.load_camera_intrinsics('head').width)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    found, width = run.stdout.split()
    assert Path(found) == share / "calibration" and width == "640"
