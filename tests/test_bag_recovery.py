"""A bag whose writer was SIGKILLed cannot be opened, but its complete records can be recovered."""

import subprocess
import sys
import textwrap

import pytest

from dbp_control.core.data.bags import BagError, read_bag
from dbp_control.core.data.recover import recover_bag

WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from pathlib import Path
    from dbp_control.core.data.bags import EpisodeBagWriter, float64_array_msg, image_msg
    bag = EpisodeBagWriter(Path(sys.argv[1]), topics={"/count": "std_msgs/msg/Float64MultiArray",
                           "/image": "sensor_msgs/msg/Image"}, compress=sys.argv[2] == "1")
    for k in range(200):
        bag.write("/count", k * 1000, float64_array_msg("humble", np.array([k], float)))
        noise = np.random.default_rng(k).integers(0, 256, (120, 160, 3), dtype=np.uint8)  # incompressible
        noise[0, 0] = k % 256
        bag.write("/image", k * 1000, image_msg("humble", k * 1000, "cam", noise))
    os.kill(os.getpid(), signal.SIGKILL)  # no close: no footer, no metadata.yaml
""")


@pytest.mark.parametrize("compress", [False, True])
def test_a_killed_recording_is_recovered_up_to_its_last_complete_chunk(tmp_path, compress):
    damaged = tmp_path / "killed"
    done = subprocess.run([sys.executable, "-c", WRITER, str(damaged), "1" if compress else "0"], capture_output=True)
    assert done.returncode == -9
    with pytest.raises(BagError):
        list(read_bag(damaged))
    report = recover_bag(damaged, tmp_path / "recovered")
    counts = [m.msg.data[0] for m in read_bag(report.out) if m.topic == "/count"]
    assert len(counts) > 20 and counts == list(range(len(counts)))  # a prefix, in order, nothing invented
    images = [m.msg for m in read_bag(report.out) if m.topic == "/image"]
    assert abs(len(images) - len(counts)) <= 1 and images[-1].data[0] == (len(images) - 1) % 256
    assert report.messages == len(counts) + len(images) and report.truncated_bytes >= 0
    with pytest.raises(BagError, match="already exists"):
        recover_bag(damaged, report.out)


def test_an_empty_or_foreign_file_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "empty.mcap").write_bytes(b"")
    with pytest.raises(BagError, match="nothing was written"):
        recover_bag(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "other.mcap").write_bytes(b"not a bag at all")
    with pytest.raises(BagError, match="not an MCAP file"):
        recover_bag(tmp_path / "other.mcap", tmp_path / "out2")
