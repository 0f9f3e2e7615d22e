"""Checkpoints: weights, EMA weights, optimiser and RNG state, with the configs that made them.

Files are written to a temporary name and renamed, so a run killed while saving leaves the previous
checkpoint intact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dbp_control.core.policies import Policy, config_from_dict, make_policy

CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, another format, or another configuration."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a dbp_control checkpoint (format {CHECKPOINT_FORMAT})")
    return data


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable `key: saved -> current` for every differing entry."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if _plain(saved.get(k)) != _plain(current.get(k))]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def load_policy(path: Path, *, use_ema: bool = True) -> Policy:
    """The policy stored in a checkpoint (its EMA weights by default), in eval mode."""
    data = read_checkpoint(path)
    policy = make_policy(config_from_dict(data["policy_config"]))
    policy.load_state_dict(data["ema"]["model"] if use_ema else data["model"])
    # one saved part-way through training (a run stopped early) holds that step's generator, e.g. with the
    # noise skip still fading; a finished one, the trained generator
    step, steps = data.get("step"), data.get("train_config", {}).get("steps")
    policy.set_training_step(step if step is not None and steps is not None and step < steps else None)
    return policy.eval()
