"""Which CPUs the policy's threads run on: the thread that runs the head at the control rate on a core
of its own, the frame encoders on the others. A pinned thread is never moved between cores mid-call
and keeps its caches warm."""

from __future__ import annotations

import os
from collections.abc import Collection


class CpuError(ValueError):
    """A CPU specification that names CPUs this process may not use, or cannot be parsed."""


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its cpuset, not the machine's count)."""
    return tuple(sorted(os.sched_getaffinity(os.getpid())))


def resolve_cpus(head: str, encoder: str, available: Collection[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(head CPUs, encoder CPUs) from two specifications, each "auto", "none" (not pinned) or a comma
    list of CPU numbers. "auto": with two or more CPUs, the head gets the last one and the encoders the
    rest; with one CPU neither is pinned (there is nothing to separate)."""
    available = tuple(sorted(available))
    auto_head = available[-1:] if len(available) >= 2 else ()
    auto_encoder = available[:-1] if len(available) >= 2 else ()

    def parse(name: str, spec: str, auto: tuple[int, ...]) -> tuple[int, ...]:
        text = spec.strip().lower()
        if text == "auto":
            return auto
        if text in ("none", ""):
            return ()
        try:
            cpus = tuple(sorted({int(part) for part in text.split(",")}))
        except ValueError:
            raise CpuError(f"{name}: expected 'auto', 'none' or CPU numbers like '1' or '0,2', got {spec!r}") from None
        outside = [c for c in cpus if c not in available]
        if outside:
            raise CpuError(f"{name}: CPU(s) {outside} are not among the CPUs this process may use {list(available)}")
        return cpus

    return parse("head_cpus", head, auto_head), parse("encoder_cpus", encoder, auto_encoder)


def pin_current_thread(cpus: Collection[int]) -> list[int]:
    """Run the calling thread only on `cpus` from now on (Linux affinity is per thread; threads it starts
    later inherit it); an empty collection leaves it as it is. Returns the CPUs it may run on now, as read
    back from the kernel."""
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
        except OSError as exc:
            raise CpuError(f"cannot pin a thread to CPU(s) {sorted(cpus)}: {exc}") from exc
    return sorted(os.sched_getaffinity(0))
