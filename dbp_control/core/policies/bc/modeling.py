"""Deterministic behaviour cloning on the same U-Net: a zero input instead of noise, MSE to the demo.
It cannot represent more than one mode, so it averages them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from dbp_control.core.policies.base import Policy, PolicyConfig, register_policy


@dataclass
class BCConfig(PolicyConfig):
    method: ClassVar[str] = "bc"


@register_policy
class BCPolicy(Policy):
    config_class = BCConfig
    nfe = 1

    def loss_from_normalized(self, cond: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pred = self.net(torch.zeros_like(action), cond)
        return F.mse_loss(pred, action), {}

    def sample_normalized(self, cond: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None, *,
                          film_offset: torch.Tensor | None = None, noise_scale: float = 1.0) -> torch.Tensor:
        # the noise is ignored: BC is deterministic
        return self.net(torch.zeros_like(noise), cond, film_offset=film_offset)
