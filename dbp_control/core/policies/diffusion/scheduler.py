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

    def sampler_table(self, sampler: str, num_inference_steps: int) -> torch.Tensor:
        """[K, 6] float64, one row per sampling step, in order: (t, sqrt(ab_t), sqrt(1 - ab_t), c_x0, c_xt,
        sigma), so that every step of either sampler is `denoise_step` with its row. DDPM: the ancestral step
        t -> t-1 (posterior mean, its fixed small variance; none at t = 0). DDIM: the deterministic (eta = 0)
        step t -> t_prev, written over the clipped x0 and x_t."""
        steps = self.timesteps(num_inference_steps)
        rows = []
        for i, t in enumerate(steps):
            ab_t = float(self.alphas_cumprod[t])
            if sampler == "ddpm":
                ab_prev = float(self.alphas_cumprod[t - 1]) if t > 0 else 1.0
                beta_t = 1 - ab_t / ab_prev
                c_x0 = math.sqrt(ab_prev) * beta_t / (1 - ab_t)
                c_xt = math.sqrt(1 - beta_t) * (1 - ab_prev) / (1 - ab_t)
                sigma = math.sqrt(beta_t * (1 - ab_prev) / (1 - ab_t)) if t > 0 else 0.0
            elif sampler == "ddim":
                ab_prev = float(self.alphas_cumprod[steps[i + 1]]) if i + 1 < len(steps) else 1.0
                # sqrt(ab_prev) x0 + sqrt(1 - ab_prev) eps, with eps = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t)
                c_xt = math.sqrt(1 - ab_prev) / math.sqrt(1 - ab_t)
                c_x0 = math.sqrt(ab_prev) - c_xt * math.sqrt(ab_t)
                sigma = 0.0
            else:
                raise ValueError(f"unknown sampler {sampler!r}; known: ddpm, ddim")
            rows.append((t, math.sqrt(ab_t), math.sqrt(1 - ab_t), c_x0, c_xt, sigma))
        return torch.tensor(rows, dtype=torch.float64)


def denoise_step(x_t: torch.Tensor, eps: torch.Tensor, row: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """One sampling step with its `sampler_table` row: c_x0 * x0 + c_xt * x_t (+ sigma * noise), where x0 is
    the clean sample the predicted noise implies, clipped to the normalised range."""
    x0 = ((x_t - row[2] * eps) / row[1]).clamp(-1, 1)
    x = row[3] * x0 + row[4] * x_t
    return x if noise is None else x + row[5] * noise
