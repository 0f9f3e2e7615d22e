"""Observation encoders: the conditioning vector of the action generator.

A low-dimensional observation is its normalised state vector; a camera observation adds one ResNet-18
feature per camera. The n_obs_steps most recent observations are concatenated.
"""

from __future__ import annotations

import torch
from torch import nn

from dbp_control.core.policies.nets.resnet import ResNet18


class ObservationEncoder(nn.Module):
    def __init__(
        self,
        *,
        state_dim: int,
        n_obs_steps: int,
        cameras: tuple[str, ...] = (),
        image_shape: tuple[int, int] = (96, 96),
        image_feature_dim: int = 128,
    ) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.n_obs_steps = n_obs_steps
        self.cameras = tuple(cameras)
        self.image_shape = tuple(image_shape)
        # one backbone per camera: views differ too much (wrist vs head) to share weights well
        self.image_encoders = nn.ModuleDict({cam: ResNet18(image_feature_dim) for cam in self.cameras})
        self.output_dim = n_obs_steps * (state_dim + image_feature_dim * len(self.cameras))

    def encode_image(self, camera: str, image: torch.Tensor) -> torch.Tensor:
        """image: uint8 [B, 3, H, W] as the camera gives it -> [B, image_feature_dim]."""
        if image.dtype != torch.uint8:
            raise TypeError(f"camera {camera!r}: images must be uint8, got {image.dtype}")
        if tuple(image.shape[-2:]) != self.image_shape:
            raise ValueError(f"camera {camera!r}: image size {tuple(image.shape[-2:])}, expected {self.image_shape}")
        return self.image_encoders[camera](image.float() / 255.0)

    def forward(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """state: normalised [B, To, S]; images: camera -> uint8 [B, To, 3, H, W] -> [B, output_dim]."""
        if state.ndim != 3 or state.shape[1:] != (self.n_obs_steps, self.state_dim):
            raise ValueError(
                f"state must be [B, {self.n_obs_steps}, {self.state_dim}] (n_obs_steps, state_dim), "
                f"got {tuple(state.shape)}"
            )
        features = [state]
        images = images or {}
        missing = set(self.cameras) - set(images)
        extra = set(images) - set(self.cameras)
        if missing or extra:
            raise ValueError(f"camera mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}")
        batch, steps = state.shape[:2]
        for cam in self.cameras:
            img = images[cam]
            if img.ndim != 5 or img.shape[:3] != (batch, steps, 3):
                raise ValueError(f"camera {cam!r}: images must be [B, To, 3, H, W], got {tuple(img.shape)}")
            feat = self.encode_image(cam, img.flatten(0, 1))
            features.append(feat.view(batch, steps, -1))
        return torch.cat(features, dim=-1).flatten(1)
