"""Fingerprints of the project's own source code, so that what one version of the code computed (an
export, a closed-loop score) is reused only while that code is unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CORE = Path(__file__).resolve().parent


def source_fingerprint(parts: Iterable[str]) -> str:
    """sha256 (16 hex digits) of the Python sources under `parts`: packages or modules of
    `dbp_control.core`, named relative to it ("export", "noise.py"); their paths are hashed too, so a
    moved file changes it."""
    digest = hashlib.sha256()
    for part in sorted(parts):
        path = CORE / part
        if not path.exists():
            raise FileNotFoundError(f"no {part!r} in {CORE} to fingerprint")
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(source.relative_to(CORE)).encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]
