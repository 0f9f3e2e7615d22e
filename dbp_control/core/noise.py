"""The scale of the noise a generative policy samples from, shared by torch policies and the engine."""

from __future__ import annotations

import math


def check_noise_scale(noise_scale: float) -> float:
    """`noise_scale` if it is a finite number >= 0, else a ValueError that names it."""
    if not isinstance(noise_scale, (int, float)) or not math.isfinite(noise_scale) or noise_scale < 0:
        raise ValueError(f"noise_scale must be a finite number >= 0 (1: sample the learned distribution, "
                         f"0: deterministic), got {noise_scale!r}")
    return float(noise_scale)
