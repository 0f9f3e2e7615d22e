"""DDPM training noise and the two samplers (DDPM ancestral, DDIM deterministic), epsilon prediction,
squared-cosine beta schedule, samples clipped to [-1, 1] (the normalised action range)."""

from __future__ import annotations

import math

import torch


def cosine_betas(num_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor(
        [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)],
        dtype=torch.float64,
    )


class NoiseScheduler:
    def __init__(self, num_train_timesteps: int = 100) -> None:
        if num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
        self.num_train_timesteps = num_train_timesteps
        self.betas = cosine_betas(num_train_timesteps)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.alphas_cumprod.to(x0.device)[t].float().view(-1, *([1] * (x0.ndim - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def timesteps(self, num_inference_steps: int) -> list[int]:
        """Evenly spaced, descending, ending at 0 (e.g. 10 of 100: 90, 80, ..., 0)."""
        if not 1 <= num_inference_steps <= self.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be in [1, {self.num_train_timesteps}], got {num_inference_steps}")
        ratio = self.num_train_timesteps // num_inference_steps
        return [i * ratio for i in reversed(range(num_inference_steps))]

    def _x0(self, x_t: torch.Tensor, eps: torch.Tensor, ab_t: float) -> torch.Tensor:
        return ((x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)).clamp(-1, 1)

    def ddpm_step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """One ancestral step t -> t-1 (posterior mean + fixed small variance); `noise` (standard normal,
        shaped like x_t) instead of drawing it lets the caller control sampling."""
        ab_t = float(self.alphas_cumprod[t])
        ab_prev = float(self.alphas_cumprod[t - 1]) if t > 0 else 1.0
        beta_t = 1 - ab_t / ab_prev
        x0 = self._x0(x_t, eps, ab_t)
        mean = (math.sqrt(ab_prev) * beta_t / (1 - ab_t)) * x0 + (math.sqrt(1 - beta_t) * (1 - ab_prev) / (1 - ab_t)) * x_t
        if t == 0:
            return mean
        var = beta_t * (1 - ab_prev) / (1 - ab_t)
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device)
        return mean + math.sqrt(var) * noise

    def ddim_step(self, eps: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor) -> torch.Tensor:
        """One deterministic (eta = 0) step t -> t_prev (t_prev < 0 means the clean sample)."""
        ab_t = float(self.alphas_cumprod[t])
        ab_prev = float(self.alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
        x0 = self._x0(x_t, eps, ab_t)
        eps = (x_t - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)  # consistent with the clipped x0
        return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps
