"""Swapping modules of the head's own copy for export-only equivalents (`matmul_conv`, `mish`, `groupnorm`)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def replace_modules(module: nn.Module, matches: Callable[[nn.Module], bool],
                    make: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every descendant of `module` that `matches` by `make(it)`, in place (a replaced module's own
    children are not visited); returns how many."""
    count = 0
    for name, child in module.named_children():
        if matches(child):
            setattr(module, name, make(child))
            count += 1
        else:
            count += replace_modules(child, matches, make)
    return count
