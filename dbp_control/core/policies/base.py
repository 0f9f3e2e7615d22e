"""What every action-chunk policy shares: config, normaliser, observation encoder and U-Net backbone.

A policy takes observations in robot units and returns action chunks in robot units; normalisation
lives inside it. Subclasses differ only in how the U-Net is trained and sampled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from dbp_control.core.noise import check_noise_scale
from dbp_control.core.policies.nets.encoders import ObservationEncoder
from dbp_control.core.policies.nets.unet1d import ConditionalUnet1D, UnetConfig, resolve_down_dims
from dbp_control.core.policies.normalizer import MinMaxNormalizer


@dataclass
class PolicyConfig:
    """Shape and backbone of a policy. `n_obs_steps` observations condition it; `horizon` steps are
    predicted, from the oldest observation's on; `n_action_steps` of them, from the newest observation's
    on, are executed before predicting again (receding horizon)."""

    method: ClassVar[str] = ""
    # a field added after configs were first saved, whose default is not what those configs trained with:
    # the value a saved config without it is read as (`config_from_dict`)
    values_before_field: ClassVar[dict[str, Any]] = {}
    state_dim: int = 0
    action_dim: int = 0
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    cameras: tuple[str, ...] = ()
    image_shape: tuple[int, int] = (96, 96)
    image_feature_dim: int = 128
    preset: str = "small"
    down_dims: tuple[int, ...] = ()  # empty: the preset's widths
    kernel_size: int = 5
    n_groups: int = 8

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        self.image_shape = tuple(self.image_shape)  # type: ignore[assignment]
        self.down_dims = resolve_down_dims(self.preset, tuple(self.down_dims))
        for name in ("state_dim", "action_dim", "horizon", "n_obs_steps", "n_action_steps"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{type(self).__name__}.{name} must be a positive integer, got {getattr(self, name)}")
        from_newest = self.horizon - self.n_obs_steps + 1  # the steps executed from: the newest observation's on
        if self.n_action_steps > from_newest:
            raise ValueError(f"n_action_steps ({self.n_action_steps}) cannot exceed the steps from the newest "
                             f"observation on, horizon - n_obs_steps + 1 ({from_newest})")
        multiple = 2 ** (len(self.down_dims) - 1)
        if self.horizon % multiple:
            raise ValueError(f"horizon {self.horizon} must be a multiple of {multiple} for {len(self.down_dims)} U-Net levels")
        if any(d % self.n_groups for d in self.down_dims):
            raise ValueError(f"every U-Net width {self.down_dims} must be divisible by n_groups={self.n_groups}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **dataclasses.asdict(self)}


class Policy(nn.Module):
    """Base class: subclasses set `config_class`, build `self.net`, and implement the two hooks."""

    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.state_normalizer = MinMaxNormalizer(config.state_dim)
        self.action_normalizer = MinMaxNormalizer(config.action_dim)
        self.encoder = ObservationEncoder(
            state_dim=config.state_dim,
            n_obs_steps=config.n_obs_steps,
            cameras=config.cameras,
            image_shape=config.image_shape,
            image_feature_dim=config.image_feature_dim,
        )
        c = config
        self.net = ConditionalUnet1D(
            UnetConfig(
                input_dim=c.action_dim,
                global_cond_dim=self.encoder.output_dim,
                down_dims=c.down_dims,
                kernel_size=c.kernel_size,
                n_groups=c.n_groups,
                step_embed_dim=self.step_embed_dim(),
            )
        )

    def step_embed_dim(self) -> int:
        """Width of the U-Net's time-step embedding; 0 (none) unless the method iterates."""
        return 0

    # -- hooks -----------------------------------------------------------------------------------
    nfe: ClassVar[int] = 1  # network evaluations per action chunk

    def set_training_step(self, step: int | None) -> None:
        """The trainer calls this before each step (None after the last); a method whose generator changes
        over training (DBP's faded noise skip) overrides it."""

    def loss_from_normalized(self, cond: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """cond: [B, C] encoded observation, action: normalised [B, T, D] -> (scalar loss, diagnostics)."""
        raise NotImplementedError

    def sample_normalized(self, cond: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None, *,
                          film_offset: torch.Tensor | None = None, noise_scale: float = 1.0) -> torch.Tensor:
        """cond: [B, C], noise: [B, T, D] (standard normal, or scaled) -> normalised chunk [B, T, D].
        `film_offset`: the U-Net's FiLM term of condition entries left out of `cond` (see
        `ConditionalUnet1D.forward`). `noise_scale`: the standard deviation of any noise the sampler draws
        itself (the DDPM sampler's per-step noise)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------
    def fit_normalizers(self, state: torch.Tensor, action: torch.Tensor) -> None:
        self.state_normalizer.fit(state)
        self.action_normalizer.fit(action)

    def _check_finite(self, batch: dict[str, Any]) -> None:
        for key in ("state", "action"):
            value = batch.get(key)
            if value is not None and not torch.isfinite(value).all():
                raise ValueError(f"batch key {key!r} contains NaN or inf")

    def encode(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.encoder(self.state_normalizer.normalize(state), images)

    def compute_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """batch: state [B, To, S], action [B, T, D] in robot units, optional images."""
        for key in ("state", "action"):
            if key not in batch:
                raise KeyError(f"training batch has no {key!r} entry (keys: {sorted(batch)})")
        self._check_finite(batch)
        action = batch["action"]
        c = self.config
        if action.ndim != 3 or action.shape[1:] != (c.horizon, c.action_dim):
            raise ValueError(f"action must be [B, {c.horizon}, {c.action_dim}] (horizon, action_dim), got {tuple(action.shape)}")
        cond = self.encode(batch["state"], batch.get("images"))
        extra = {}
        if "neighbour_action" in batch:  # more demonstrations as positives (DBP with neighbour_positives)
            neighbours = batch["neighbour_action"]
            if neighbours.ndim != 4 or neighbours.shape[0] != action.shape[0] or neighbours.shape[2:] != action.shape[1:]:
                raise ValueError(f"neighbour_action must be [B, K, {c.horizon}, {c.action_dim}] for a batch of "
                                 f"{action.shape[0]}, got {tuple(neighbours.shape)}")
            if not torch.isfinite(neighbours).all():
                raise ValueError("batch key 'neighbour_action' contains NaN or inf")
            extra["neighbour_action"] = self.action_normalizer.normalize(neighbours)
        return self.loss_from_normalized(cond, self.action_normalizer.normalize(action), **extra)

    @torch.no_grad()
    def predict_chunk(
        self,
        state: torch.Tensor,
        images: dict[str, torch.Tensor] | None = None,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise_scale: float = 1.0,
    ) -> torch.Tensor:
        """Observation [B, To, S] (+ images) in robot units -> action chunk [B, horizon, D] in robot units.
        `noise` ([B, horizon, D]) lets the caller control sampling. `noise_scale`: the standard deviation of
        the noise drawn here (z when `noise` is None, and the DDPM sampler's per-step noise); 1 samples
        the learned distribution, 0 makes the chunk a deterministic function of the observation."""
        check_noise_scale(noise_scale)
        self._check_finite({"state": state})
        cond = self.encode(state, images)
        shape = (state.shape[0], self.config.horizon, self.config.action_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator, device=state.device) * noise_scale
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        return self.action_normalizer.unnormalize(self.sample_normalized(cond, noise, generator,
                                                                         noise_scale=noise_scale))


_POLICIES: dict[str, type[Policy]] = {}  # method name -> policy class, filled by @register_policy


def register_policy(cls: type[Policy]) -> type[Policy]:
    _POLICIES[cls.config_class.method] = cls
    return cls


def available_methods() -> list[str]:
    return sorted(_POLICIES)


def config_from_dict(data: dict[str, Any]) -> PolicyConfig:
    """Rebuild a config saved by `PolicyConfig.to_dict`; unknown methods or fields are errors. A field the
    saved config lacks takes its `values_before_field` entry, else its default."""
    data = dict(data)
    method = data.pop("method", None)
    if method not in _POLICIES:
        raise ValueError(f"unknown policy method {method!r}; known: {available_methods()}")
    cls = _POLICIES[method].config_class
    data = {**cls.values_before_field, **data}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}")
    return cls(**data)


def make_policy(config: PolicyConfig) -> Policy:
    if config.method not in _POLICIES:
        raise ValueError(f"unknown policy method {config.method!r}; known: {available_methods()}")
    return _POLICIES[config.method](config)
