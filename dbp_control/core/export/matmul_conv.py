"""Wide 1-D convolutions of the head as one MatMul each, for ONNX Runtime on a CPU.

At batch 1 the head's convolutions are short (4-16 steps) and wide (up to 512 channels): ONNX Runtime's
Conv reads its weights afresh on every call, while a MatMul with a constant right-hand side gets them
pre-packed once, when the session loads. A stride-1 convolution with "same" padding is

    y[t] = sum over taps j of W_j @ x[t + j - k // 2]

so each output step's inputs (the padded input's rows t ... t + k - 1, gathered by one Gather with constant
indices) go through one MatMul against all taps' weights stacked: Transpose, Pad, Gather, Reshape, MatMul,
Add, Transpose. Exact up to the order of float additions. The first version summed the taps' shifted
products instead (a Slice and a Gather per tap and the Adds between them: 20 nodes a convolution, not 7).
Measured on the 2-core CPU, the three-camera `small` head, interleaved with the head as it was in one
process: the first version on layers of 256 channels and more, median 2.59 -> 2.20 ms, p99 3.95 -> 3.51
ms (narrower layers were slower that way); this version, with the FiLM layers merged and Mish through a
Sigmoid (2026-11-29, an Intel Xeon with AMX), from 128 channels: 1.98 -> 1.55 ms, and as INT8
(`quantize`) 1.63 -> 1.10 ms. From 64 channels or from 1 it was no faster, and INT8 erred more.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dbp_control.core.export.rewrite import replace_modules

MIN_IN_CHANNELS = 128  # rewritten from this width up (measured: narrower was no faster)


class Conv1dAsMatMul(nn.Module):
    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        weight = conv.weight.detach()  # [out, in, k]
        self.kernel_size, self.out_channels = weight.shape[2], weight.shape[0]
        # [k * in, out]: tap j's weights in rows j * in ... (j + 1) * in, as the gathered inputs lie
        self.register_buffer("weight", weight.permute(2, 1, 0).reshape(-1, weight.shape[0]).contiguous())
        self.register_buffer("bias", conv.bias.detach().clone() if conv.bias is not None else torch.zeros(weight.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, in, T] -> [B, out, T]."""
        batch, channels, steps = (int(d) for d in x.shape)  # Python ints: the indices become constants
        pad = self.kernel_size // 2
        padded = F.pad(x, (pad, pad)).transpose(1, 2)  # [B, T + k - 1, in], zeros before and after along T
        taps = torch.arange(steps)[:, None] + torch.arange(self.kernel_size)[None, :]  # [T, k]: padded rows
        gathered = padded[:, taps].reshape(batch, steps, self.kernel_size * channels)
        return (gathered @ self.weight + self.bias).transpose(1, 2)


def rewritable(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv1d) and conv.in_channels >= MIN_IN_CHANNELS and conv.groups == 1
            and conv.stride == (1,) and conv.dilation == (1,) and conv.kernel_size[0] % 2 == 1
            and conv.padding == (conv.kernel_size[0] // 2,) and conv.padding_mode == "zeros")


def rewrite_convolutions(module: nn.Module) -> int:
    """Replace every rewritable Conv1d inside `module`, in place; returns how many."""
    return replace_modules(module, rewritable, Conv1dAsMatMul)
