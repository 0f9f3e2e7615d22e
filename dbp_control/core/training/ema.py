"""Exponential moving average of the weights; the averaged copy is what gets evaluated and exported."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Decay warms up as 1 - (1 + step)^-power (Diffusion Policy's schedule), capped at max_decay, so
    the average follows the fast-changing early weights instead of the random initialisation."""

    def __init__(self, model: nn.Module, *, max_decay: float = 0.999, power: float = 0.75) -> None:
        if not 0.0 <= max_decay < 1.0:
            raise ValueError(f"EMA max_decay must be in [0, 1), got {max_decay}")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.max_decay = max_decay
        self.power = power
        self.num_updates = 0

    def decay(self) -> float:
        return min(self.max_decay, max(0.0, 1.0 - (1.0 + self.num_updates) ** -self.power))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay()
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)  # buffers (normaliser statistics) are copied, not averaged
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
