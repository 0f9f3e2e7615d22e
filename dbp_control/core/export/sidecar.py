"""What the exporter and the engine agree on about an exported policy's sidecar (`policy.yaml`), kept
free of torch so that the engine, which runs on the robot, loads without it."""

from __future__ import annotations

import hashlib
from pathlib import Path

SIDECAR = "policy.yaml"
SIDECAR_FORMAT = "dbp_control.policy"
SIDECAR_VERSION = 2  # 2: encoders give FiLM conditions, not features (1 is read for state-only policies)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
