"""The source fingerprint that keys reused exports and logged evaluations: prose edits keep it, code edits
and moved files change it."""

from pathlib import Path

import pytest

from dbp_control.core.fingerprint import source_fingerprint

MODULE = '''"""A module."""


def gain(x: float) -> float:
    """Twice x."""
    return 2 * x  # doubled
'''


def _package(root: Path, text: str) -> Path:
    (root / "pkg").mkdir(exist_ok=True)
    (root / "pkg" / "calc.py").write_text(text)
    return root


def test_prose_edits_keep_the_fingerprint(tmp_path: Path) -> None:
    before = source_fingerprint(["pkg"], _package(tmp_path, MODULE))
    reworded = MODULE.replace("Twice x.", "x, doubled:\n    the gain.").replace("# doubled", "# why: the gain")
    after = source_fingerprint(["pkg"], _package(tmp_path, reworded.replace("return 2 * x", "return (2 * x)")))
    assert after == before


@pytest.mark.parametrize("edit", [("return 2 * x", "return 3 * x"), ('"""Twice x."""', "x = float(x)")])
def test_code_edits_change_the_fingerprint(tmp_path: Path, edit: tuple[str, str]) -> None:
    before = source_fingerprint(["pkg"], _package(tmp_path, MODULE))
    assert source_fingerprint(["pkg"], _package(tmp_path, MODULE.replace(*edit))) != before


def test_a_moved_file_changes_the_fingerprint(tmp_path: Path) -> None:
    before = source_fingerprint(["pkg"], _package(tmp_path, MODULE))
    (tmp_path / "pkg" / "calc.py").rename(tmp_path / "pkg" / "gain.py")
    assert source_fingerprint(["pkg"], tmp_path) != before


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="'absent'"):
        source_fingerprint(["absent"], _package(tmp_path, MODULE))
