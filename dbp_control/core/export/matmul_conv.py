"""Wide 1-D convolutions of the head as one MatMul each, for ONNX Runtime on a CPU.

At batch 1 the head's convolutions are short (4-16 steps) and wide (up to 512 channels): ONNX Runtime's
Conv reads its weights afresh on every call, while a MatMul with a constant right-hand side gets them
pre-packed once, when the session loads. A stride-1 convolution with "same" padding is

    y[t] = sum over taps j of W_j @ x[t + j - k // 2]

so all taps go through one MatMul (x against the taps' weights side by side) and the shifted results are
summed. Exact up to the order of float additions. Measured on the 2-core CPU, the three-camera `small`
head with the 256-channel and wider layers rewritten, interleaved with the head as it was in one process
(as the node runs its encoders beside the head): median 2.59 -> 2.20 ms, p99 3.95 -> 3.51 ms; alone, back
to back, the difference stayed within the machine's noise. Narrower layers were slower as a MatMul.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MIN_IN_CHANNELS = 256  # rewritten from this width up (measured; below it ONNX Runtime's Conv was faster)


class Conv1dAsMatMul(nn.Module):
    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        weight = conv.weight.detach()  # [out, in, k]
        self.kernel_size, self.out_channels = weight.shape[2], weight.shape[0]
        # [in, k * out]: tap j's weights in columns j * out ... (j + 1) * out
        self.register_buffer("weight", weight.permute(1, 2, 0).reshape(weight.shape[1], -1).contiguous())
        self.register_buffer("bias", conv.bias.detach().clone() if conv.bias is not None else torch.zeros(weight.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, in, T] -> [B, out, T]."""
        batch, _, steps = x.shape
        taps = (x.transpose(1, 2) @ self.weight).reshape(batch, steps, self.kernel_size, self.out_channels)
        pad = self.kernel_size // 2
        taps = F.pad(taps, (0, 0, 0, 0, pad, pad))  # zeros before and after along T
        y = sum(taps[:, j : j + steps, j] for j in range(self.kernel_size))
        return (y + self.bias).transpose(1, 2)


def rewritable(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv1d) and conv.in_channels >= MIN_IN_CHANNELS and conv.groups == 1
            and conv.stride == (1,) and conv.dilation == (1,) and conv.kernel_size[0] % 2 == 1
            and conv.padding == (conv.kernel_size[0] // 2,) and conv.padding_mode == "zeros")


def rewrite_convolutions(module: nn.Module) -> int:
    """Replace every rewritable Conv1d inside `module`, in place; returns how many."""
    count = 0
    for name, child in module.named_children():
        if rewritable(child):
            setattr(module, name, Conv1dAsMatMul(child))
            count += 1
        else:
            count += rewrite_convolutions(child)
    return count
