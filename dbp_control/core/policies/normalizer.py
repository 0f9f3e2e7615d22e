"""Min-max normalisation to [-1, 1], stored as buffers so it travels with every checkpoint."""

from __future__ import annotations

import torch
from torch import nn

_MIN_RANGE = 1e-4  # narrower ranges (constant features) are centred, not stretched


class MinMaxNormalizer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("offset", torch.zeros(dim))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, data: torch.Tensor) -> MinMaxNormalizer:
        """data: [..., dim] samples of the raw feature."""
        flat = data.reshape(-1, data.shape[-1]).double()
        if flat.shape[0] == 0:
            raise ValueError("cannot fit a normaliser on empty data")
        if not torch.isfinite(flat).all():
            raise ValueError("cannot fit a normaliser on data with NaN or inf")
        lo, hi = flat.min(0).values, flat.max(0).values
        span = hi - lo
        wide = span > _MIN_RANGE
        scale = torch.where(wide, 2.0 / span.clamp_min(_MIN_RANGE), torch.ones_like(span))
        offset = torch.where(wide, -1.0 - lo * scale, -(lo + hi) / 2)
        self.scale.copy_(scale.float())
        self.offset.copy_(offset.float())
        self.fitted.fill_(True)
        return self

    def _check(self, x: torch.Tensor) -> None:
        if not bool(self.fitted):
            raise RuntimeError("normaliser used before fit(): fit it on the training data first")
        if x.shape[-1] != self.scale.shape[0]:
            raise ValueError(f"normaliser expects {self.scale.shape[0]} features, got shape {tuple(x.shape)}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x * self.scale + self.offset

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return (x - self.offset) / self.scale
