"""Conditional 1-D temporal U-Net over an action chunk (after Diffusion Policy's ConditionalUnet1D).

The chunk is [B, T, D] (T time steps of D action dimensions); convolutions run along T. A global
condition vector (the observation embedding, plus a time-step embedding for diffusion) modulates every
residual block by FiLM. DBP and BC use it with no time step at all.

FiLM is Linear(Mish(cond)), and Mish acts on each entry, so the part of every block's FiLM that comes from
some entries of the condition (the image features) can be computed elsewhere and added as `film_offset`
(the export does so: see `dbp_control.core.export.film`). All blocks' FiLM outputs are computed up front,
side by side, so the export can also write them as one Linear (`merged_film`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

UNET_PRESETS: dict[str, tuple[int, ...]] = {
    "paper": (256, 512, 1024),  # Diffusion Policy's size; for GPUs
    "small": (64, 128, 256),  # the CPU default: serves several hundred Hz at batch 1
}


def resolve_down_dims(preset: str, down_dims: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The channel widths per U-Net level: explicit `down_dims` win over the named preset."""
    if down_dims:
        return tuple(int(d) for d in down_dims)
    if preset not in UNET_PRESETS:
        raise ValueError(f"unknown backbone preset {preset!r}; known presets: {sorted(UNET_PRESETS)}")
    return UNET_PRESETS[preset]


@dataclass(frozen=True)
class UnetConfig:
    input_dim: int
    global_cond_dim: int
    down_dims: tuple[int, ...] = UNET_PRESETS["small"]
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 0  # 0: no time-step input (DBP, BC); > 0: diffusion


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: [B] float time steps -> [B, dim]."""
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1)))
        args = t.float()[:, None] * freqs[None, :]
        return torch.cat([args.sin(), args.cos()], dim=-1)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length-preserving."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int) -> None:
        super().__init__(
            nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_ch),
            nn.Mish(),
        )


class FiLMResBlock(nn.Module):
    """Two conv blocks; the condition sets a per-channel scale and bias between them."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.block1 = Conv1dBlock(in_ch, out_ch, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_ch, out_ch, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.out_ch = out_ch

    @property
    def film_width(self) -> int:
        return 2 * self.out_ch

    def forward(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T], film: [B, film_width], this block's `self.film(cond)` (plus any offset) ->
        [B, C_out, T]."""
        h = self.block1(x)
        scale, bias = film.unsqueeze(-1).chunk(2, dim=1)
        h = self.block2(scale * h + bias)
        return h + self.residual(x)


class ConditionalUnet1D(nn.Module):
    def __init__(self, cfg: UnetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k, g = cfg.kernel_size, cfg.n_groups
        cond_dim = cfg.global_cond_dim
        if cfg.step_embed_dim > 0:
            self.step_encoder: nn.Module | None = nn.Sequential(
                SinusoidalPosEmb(cfg.step_embed_dim),
                nn.Linear(cfg.step_embed_dim, cfg.step_embed_dim * 4),
                nn.Mish(),
                nn.Linear(cfg.step_embed_dim * 4, cfg.step_embed_dim),
            )
            cond_dim += cfg.step_embed_dim
        else:
            self.step_encoder = None
        if cond_dim <= 0:
            raise ValueError("the U-Net needs a condition: global_cond_dim + step_embed_dim must be > 0")

        dims = (cfg.input_dim, *cfg.down_dims)
        levels = list(zip(dims[:-1], dims[1:]))
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(levels):
            last = i == len(levels) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        FiLMResBlock(cin, cout, cond_dim, k, g),
                        FiLMResBlock(cout, cout, cond_dim, k, g),
                        nn.Conv1d(cout, cout, 3, stride=2, padding=1) if not last else nn.Identity(),
                    ]
                )
            )
        mid = cfg.down_dims[-1]
        self.mid = nn.ModuleList([FiLMResBlock(mid, mid, cond_dim, k, g), FiLMResBlock(mid, mid, cond_dim, k, g)])
        self.up = nn.ModuleList()
        # one upsampling per downsampling; the first level's skip is left unused, as in Diffusion Policy
        for cin, cout in reversed(levels[1:]):
            self.up.append(
                nn.ModuleList(
                    [
                        FiLMResBlock(cout * 2, cin, cond_dim, k, g),
                        FiLMResBlock(cin, cin, cond_dim, k, g),
                        nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1),
                    ]
                )
            )
        start = cfg.down_dims[0]
        self.final = nn.Sequential(Conv1dBlock(start, start, k, g), nn.Conv1d(start, cfg.input_dim, 1))
        # set by the export: every block's FiLM layer as one (cond -> [B, film_width]), in place of the blocks'
        self.merged_film: nn.Module | None = None

    @property
    def min_horizon_multiple(self) -> int:
        """The chunk length must be divisible by this (one halving per level but the last)."""
        return 2 ** (len(self.cfg.down_dims) - 1)

    def film_blocks(self) -> list[FiLMResBlock]:
        """The FiLM blocks in the order `forward` applies them: the layout of `film_offset`."""
        return [*(block for level in self.down for block in level[:2]), *self.mid,
                *(block for level in self.up for block in level[:2])]

    @property
    def film_width(self) -> int:
        """The width of `film_offset`: every block's scale and bias."""
        return sum(block.film_width for block in self.film_blocks())

    def film_outputs(self, cond: torch.Tensor) -> torch.Tensor:
        """cond: [B, cond_dim] -> every block's FiLM output side by side [B, film_width], in film_blocks' order."""
        if self.merged_film is not None:
            return self.merged_film(cond)
        return torch.cat([block.film(cond) for block in self.film_blocks()], dim=-1)

    def forward(
        self, sample: torch.Tensor, global_cond: torch.Tensor, timestep: torch.Tensor | None = None,
        film_offset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sample: [B, T, D], global_cond: [B, global_cond_dim], timestep: [B] or None -> [B, T, D].
        film_offset: [B, sum of film widths], each block's slice added to its FiLM output."""
        if sample.ndim != 3 or sample.shape[-1] != self.cfg.input_dim:
            raise ValueError(f"U-Net sample must be [B, T, {self.cfg.input_dim}], got {tuple(sample.shape)}")
        if sample.shape[1] % self.min_horizon_multiple:
            raise ValueError(f"horizon {sample.shape[1]} must be a multiple of {self.min_horizon_multiple}")
        cond = global_cond
        if self.step_encoder is not None:
            if timestep is None:
                raise ValueError("this U-Net was built with a time-step embedding: pass timestep")
            cond = torch.cat([cond, self.step_encoder(timestep.expand(sample.shape[0]))], dim=-1)
        elif timestep is not None:
            raise ValueError("this U-Net has no time-step input (DBP/BC): timestep must be None")

        film = self.film_outputs(cond)
        if film_offset is not None:
            if film_offset.shape != (sample.shape[0], self.film_width):
                raise ValueError(f"film_offset must be [{sample.shape[0]}, {self.film_width}], "
                                 f"got {tuple(film_offset.shape)}")
            film = film + film_offset
        # taken block by block in film_blocks' order, which is this order
        films = iter(film.split([block.film_width for block in self.film_blocks()], dim=-1))

        x = sample.transpose(1, 2)
        skips = []
        for res1, res2, downsample in self.down:
            x = res1(x, next(films))
            x = res2(x, next(films))
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, next(films))
        for res1, res2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = res1(x, next(films))
            x = upsample(res2(x, next(films)))
        return self.final(x).transpose(1, 2)
