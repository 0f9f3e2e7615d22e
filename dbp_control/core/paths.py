"""Where the package's data folders are: the source tree (editable installs) or <prefix>/share/dbp_control
where colcon and pip install them (this file is then <prefix>/lib/pythonX.Y/site-packages/dbp_control/core/)."""

from __future__ import annotations

from pathlib import Path


def package_data_dir(name: str) -> Path:
    """calibration/, config/, launch/ or models/ of this package."""
    here = Path(__file__).resolve()
    source = here.parents[2] / name
    return source if source.is_dir() else here.parents[5] / "share" / "dbp_control" / name


CALIBRATION_DIR = package_data_dir("calibration")
CONFIG_DIR = package_data_dir("config")
MODELS_DIR = package_data_dir("models")
