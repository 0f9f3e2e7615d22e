"""Drift-Based Policy: a one-step generator f(z, obs) -> action chunk, trained with the drift loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from dbp_control.core.policies.base import Policy, PolicyConfig, register_policy
from dbp_control.core.policies.dbp.drift import DEFAULT_TEMPERATURES, drift_loss, sample_unit


@dataclass
class DBPConfig(PolicyConfig):
    method: ClassVar[str] = "dbp"
    num_generated: int = 4  # G: samples drawn per observation to build the drift field
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    # K: the action chunks of the K nearest observations of other demonstrations join each window's own as
    # positives (P = 1 + K), so the field sees the modes an observation leads to, not one demonstration's
    neighbour_positives: int = 0
    # c > 0: the generator is c * z + U-Net(z, obs), so its samples start spread (about c per coordinate) rather
    # than collapsed onto one point, where the drift field's pull on them fades (see drift_loss's `spread`)
    noise_skip: float = 0.0
    # N > 0: the skip falls linearly from c to 0 over the first N training steps, so it only lifts the samples
    # out of the collapsed start and the trained generator (evaluated, exported) is the U-Net alone
    noise_skip_fade_steps: int = 0
    # w > 0: f(0, obs), the chunk deployed at noise scale 0, is pulled onto the nearest of its observation's G
    # samples (weight w, in the drift loss's units). Without it z = 0 (norm 0, where the draws' norms are near
    # sqrt(horizon * action_dim)) is an input training never constrains; regressed onto the demonstration
    # instead, it becomes the conditional mean, which averages a task's modes (0/50 on transport seed 0).
    # Configs saved before the term existed (2026-12-02) trained without it
    zero_noise_weight: float = 1.0
    values_before_field: ClassVar[dict[str, Any]] = {"zero_noise_weight": 0.0}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.temperatures = tuple(float(t) for t in self.temperatures)
        self.noise_skip = float(self.noise_skip)
        self.zero_noise_weight = float(self.zero_noise_weight)
        check_dbp_settings(self.num_generated, self.temperatures, self.neighbour_positives, self.noise_skip,
                           self.noise_skip_fade_steps, self.zero_noise_weight)


def check_dbp_settings(num_generated: int, temperatures: tuple[float, ...], neighbour_positives: int,
                       noise_skip: float, noise_skip_fade_steps: int, zero_noise_weight: float) -> None:
    """Refuse DBP's drift-field and generator settings, naming the field: one check for the policy's config and
    for a training recipe, which runs it before any work (the bench: before it records demonstrations)."""
    if num_generated < 2:
        raise ValueError(f"num_generated must be >= 2 (DBP's samples repel each other), got {num_generated}")
    if not temperatures or any(t <= 0 for t in temperatures):
        raise ValueError(f"temperatures must be positive numbers, got {temperatures}")
    if neighbour_positives < 0:
        raise ValueError(f"neighbour_positives must be >= 0, got {neighbour_positives}")
    if not math.isfinite(noise_skip) or noise_skip < 0:
        raise ValueError(f"noise_skip must be a finite number >= 0, got {noise_skip}")
    if (isinstance(noise_skip_fade_steps, bool) or not isinstance(noise_skip_fade_steps, int)
            or noise_skip_fade_steps < 0):
        raise ValueError(f"noise_skip_fade_steps must be an integer >= 0, got {noise_skip_fade_steps!r}")
    if noise_skip_fade_steps and not noise_skip:
        raise ValueError("noise_skip_fade_steps fades the noise skip out, but noise_skip is 0")
    if not math.isfinite(zero_noise_weight) or zero_noise_weight < 0:
        raise ValueError(f"zero_noise_weight must be a finite number >= 0, got {zero_noise_weight}")


@register_policy
class DBPPolicy(Policy):
    config_class = DBPConfig
    config: DBPConfig
    nfe = 1

    def __init__(self, config: DBPConfig) -> None:
        super().__init__(config)
        self.skip = self.skip_at(None)  # the trained generator's; the trainer sets each step's

    def skip_at(self, step: int | None) -> float:
        """The noise skip's coefficient at training step `step`; None: once trained (a fade has ended: 0)."""
        c, fade = self.config.noise_skip, self.config.noise_skip_fade_steps
        if not fade:
            return c
        return 0.0 if step is None else c * max(0.0, 1.0 - step / fade)

    def set_training_step(self, step: int | None) -> None:
        self.skip = self.skip_at(step)

    def loss_from_normalized(self, cond: torch.Tensor, action: torch.Tensor,
                             neighbour_action: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`neighbour_action`: [B, K, T, D] other demonstrations' chunks, positives beside `action`."""
        batch, horizon, dim = action.shape
        n_gen = self.config.num_generated
        z = torch.randn(batch * n_gen, horizon, dim, device=action.device)
        gen = self.generate(z, cond.repeat_interleave(n_gen, dim=0))
        pos = action.reshape(batch, 1, horizon * dim)
        if neighbour_action is not None:
            pos = torch.cat([pos, neighbour_action.reshape(batch, -1, horizon * dim)], dim=1)
        samples = gen.reshape(batch, n_gen, horizon * dim)
        loss, diagnostics = drift_loss(samples, pos, self.config.temperatures)
        loss = loss.mean()
        if self.config.zero_noise_weight:
            zero_noise = self._zero_noise_loss(cond, samples.detach(), sample_unit(diagnostics["scale"], horizon * dim))
            diagnostics["zero_noise_loss"] = zero_noise.detach()
            loss = loss + self.config.zero_noise_weight * zero_noise
        if self.config.noise_skip:  # a fading skip's coefficient at this step
            diagnostics["noise_skip"] = torch.tensor(self.skip)
        return loss, diagnostics

    def _zero_noise_loss(self, cond: torch.Tensor, samples: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
        """Mean squared distance, in `unit`s, from f(0, obs) to the nearest of the observation's [B, G, N]
        samples: the nearest, not the mean of the samples or the demonstration, so the deterministic chunk moves
        onto one mode of the learned distribution rather than between them."""
        batch, _, flat_dim = samples.shape
        zero_noise = samples.new_zeros(batch, self.config.horizon, self.config.action_dim)
        zero = self.generate(zero_noise, cond).reshape(batch, 1, flat_dim)
        nearest = samples[torch.arange(batch, device=samples.device), ((zero - samples) ** 2).sum(-1).argmin(1)]
        return (((zero[:, 0] - nearest) / unit) ** 2).mean()

    def sample_normalized(self, cond: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None, *,
                          film_offset: torch.Tensor | None = None, noise_scale: float = 1.0) -> torch.Tensor:
        return self.generate(noise, cond, film_offset=film_offset)

    def generate(self, z: torch.Tensor, cond: torch.Tensor, *, film_offset: torch.Tensor | None = None) -> torch.Tensor:
        """f(z, obs): one forward pass from noise to a normalised chunk."""
        chunk = self.net(z, cond, film_offset=film_offset)
        return chunk + self.skip * z if self.skip else chunk
