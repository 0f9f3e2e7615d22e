"""The RealSense camera node without a camera: a clear error, never a 15 s block in pipeline.start()."""

import subprocess
import sys
import time

import pytest

from dbp_control.nodes.camera import CameraError, find_device, import_realsense


def test_without_a_device_the_node_names_the_problem_at_once():
    rs = pytest.importorskip("pyrealsense2", reason="pyrealsense2 (the realsense extra) is not installed")
    if len(rs.context().query_devices()):
        pytest.skip("a RealSense device is connected")
    with pytest.raises(CameraError, match="no RealSense device is connected"):
        find_device(rs, "")
    from dbp_control.middleware.zenoh_backend import open_router
    from dbp_control.nodes.processes import free_endpoint

    endpoint = free_endpoint()
    router = open_router(endpoint)  # the node reaches its camera lookup only once it has joined the graph
    try:
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "dbp_control.cli.main", "node", "camera", "--endpoint", endpoint,
                               "--set", "serial=123456"], capture_output=True, text=True, timeout=60)
    finally:
        router.close()
    assert done.returncode == 2 and "no RealSense device is connected" in done.stderr, done.stderr
    assert time.monotonic() - start < 10


def test_a_missing_library_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # import fails as without libusb or the wheel
    with pytest.raises(CameraError, match="pyrealsense2 is not importable"):
        import_realsense()
