"""Mish written for ONNX Runtime on a CPU: x * tanh(softplus(x)) through one Sigmoid.

With s = sigmoid(x), 1 + e^x = 1 / (1 - s), so tanh(softplus(x)) = ((1 + e^x)^2 - 1) / ((1 + e^x)^2 + 1)
= n / (2 - n) with n = s * (2 - s). ONNX Runtime's Sigmoid is vectorised and its Softplus is not: in the
three-camera `small` head (25 Mish layers) this saved about 0.3 of 2.2 ms a call (2026-11-29, interleaved
in one process). Large |x| stays finite (s saturates at 0 or 1: n / (2 - n) at 0 or 1), and the result
agrees with torch's Mish to float rounding (tested).
"""

from __future__ import annotations

import torch
from torch import nn

from dbp_control.core.export.rewrite import replace_modules


class SigmoidMish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x)
        n = s * (2 - s)
        return x * n / (2 - n)


def rewrite_mish(module: nn.Module) -> int:
    """Replace every nn.Mish inside `module`, in place; returns how many."""
    return replace_modules(module, lambda child: isinstance(child, nn.Mish), lambda _: SigmoidMish())
