"""Fingerprints of the project's own source code, so that what one version of the code computed (an
export, a closed-loop score) is reused only while that code is unchanged."""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

CORE = Path(__file__).resolve().parent


def source_fingerprint(parts: Iterable[str], root: Path = CORE) -> str:
    """sha256 (16 hex digits) of the Python sources under `parts`: packages or modules of `root` (by default
    `dbp_control.core`), named relative to it ("export", "noise.py"); their paths are hashed too, so a moved
    file changes it. Each source is hashed as its syntax tree without docstrings: editing a comment, a
    docstring or the layout keeps what was computed (an hour of logged evaluations), any change to the code
    does not."""
    digest = hashlib.sha256()
    for part in sorted(parts):
        path = root / part
        if not path.exists():
            raise FileNotFoundError(f"no {part!r} in {root} to fingerprint")
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(source.relative_to(root)).encode())
            digest.update(_code_without_prose(source))
    return digest.hexdigest()[:16]


def _code_without_prose(source: Path) -> bytes:
    """The syntax tree of `source` (comments and layout are not in it) with every docstring removed."""
    tree = ast.parse(source.read_bytes(), filename=str(source))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            if _is_docstring(node.body[0]):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))
