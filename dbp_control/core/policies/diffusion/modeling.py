"""Diffusion Policy baseline on the same U-Net, with a time-step embedding added to the condition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from dbp_control.core.policies.base import Policy, PolicyConfig, register_policy
from dbp_control.core.policies.diffusion.scheduler import NoiseScheduler, denoise_step

SAMPLERS = ("ddpm", "ddim")


@dataclass
class DiffusionConfig(PolicyConfig):
    method: ClassVar[str] = "diffusion"
    num_train_timesteps: int = 100
    sampler: str = "ddpm"  # ddpm: every training step; ddim: deterministic with num_inference_steps
    num_inference_steps: int = 100
    step_embed_dim: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown diffusion sampler {self.sampler!r}; known: {list(SAMPLERS)}")
        if self.sampler == "ddpm" and self.num_inference_steps != self.num_train_timesteps:
            raise ValueError("the ddpm sampler runs every training time step: num_inference_steps must equal num_train_timesteps")
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be in [1, {self.num_train_timesteps}], got {self.num_inference_steps}")


@register_policy
class DiffusionPolicy(Policy):
    config_class = DiffusionConfig
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__(config)
        self.scheduler = NoiseScheduler(config.num_train_timesteps)

    def step_embed_dim(self) -> int:
        return self.config.step_embed_dim

    @property
    def nfe(self) -> int:  # type: ignore[override]
        return self.config.num_inference_steps

    def use_sampler(self, sampler: str, num_inference_steps: int) -> None:
        """Switch sampling (a DDPM-trained net samples with DDPM or DDIM); training is unaffected."""
        self.config.sampler, self.config.num_inference_steps = sampler, num_inference_steps
        self.config.__post_init__()

    def loss_from_normalized(self, cond: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noise = torch.randn_like(action)
        t = torch.randint(0, self.scheduler.num_train_timesteps, (action.shape[0],), device=action.device)
        pred = self.net(self.scheduler.add_noise(action, noise, t), cond, t)
        return F.mse_loss(pred, noise), {}

    def sample_normalized(self, cond: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None,
                          step_noise: torch.Tensor | None = None, *,
                          film_offset: torch.Tensor | None = None, noise_scale: float = 1.0) -> torch.Tensor:
        """`step_noise` [steps - 1, B, T, D]: the DDPM sampler's per-step noise, when the caller supplies it;
        otherwise it is drawn here with standard deviation `noise_scale`."""
        x = noise
        table = self.sampler_table().to(device=x.device, dtype=x.dtype)
        for i, row in enumerate(table):
            eps = self.net(x, cond, row[:1], film_offset=film_offset)
            step_noise_i = None
            if self.config.sampler == "ddpm" and i < len(table) - 1:  # the last step (t = 0) adds none
                step_noise_i = (noise_scale * torch.randn(x.shape, generator=generator, device=x.device)
                                if step_noise is None else step_noise[i])
            x = denoise_step(x, eps, row, step_noise_i)
        return x

    def sampler_table(self) -> torch.Tensor:
        """The configured sampler's steps, one `NoiseScheduler.sampler_table` row each (float64)."""
        return self.scheduler.sampler_table(self.config.sampler, self.config.num_inference_steps)
