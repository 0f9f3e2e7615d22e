"""Reading the project's YAML files (calibration, joint limits, policy sidecars) with errors that name
the file: a missing file, invalid YAML or a document that is not a mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_mapping(path: Path, error: type[Exception], missing: str) -> dict[str, Any]:
    """The YAML mapping in `path`; `error(missing)` when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise error(missing)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    return data
