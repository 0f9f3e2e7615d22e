"""One trainer for every method: AdamW, cosine schedule with warm-up, gradient clipping, EMA,
checkpoints that resume exactly (weights, optimiser, schedule, RNG), and a JSON-lines metrics log."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dbp_control.core.policies import Policy, config_from_dict
from dbp_control.core.policies.normalizer import MinMaxNormalizer
from dbp_control.core.training.checkpoint import (
    CheckpointError,
    config_differences,
    read_checkpoint,
    save_checkpoint,
)
from dbp_control.core.training.data import BatchSource
from dbp_control.core.training.ema import EMA

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
_CADENCE_FIELDS = {"checkpoint_every", "log_every"}  # may change between a run and its resumption


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-6
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_max_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 25
    # std of a random offset added to each training window's observed state, in the normaliser's units
    # (each feature's training range maps to [-1, 1]): one for every feature, or one per feature; 0 trains
    # on the states as recorded
    state_noise: float | tuple[float, ...] = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.grad_clip <= 0 or self.warmup_steps < 0:
            raise ValueError("TrainConfig: lr and grad_clip must be positive, warmup_steps non-negative")
        if isinstance(self.state_noise, (list, tuple)):
            self.state_noise = tuple(float(std) for std in self.state_noise)
        stds = self._state_stds()
        if not stds or not all(math.isfinite(std) and std >= 0 for std in stds):
            raise ValueError(f"TrainConfig.state_noise must be finite numbers >= 0, got {self.state_noise}")

    def _state_stds(self) -> tuple[float, ...]:
        return self.state_noise if isinstance(self.state_noise, tuple) else (self.state_noise,)

    @property
    def perturbs_state(self) -> bool:
        return any(std > 0 for std in self._state_stds())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def perturb_state(state: torch.Tensor, normalizer: MinMaxNormalizer, noise: float | tuple[float, ...]) -> torch.Tensor:
    """state [B, To, S] in robot units plus one Gaussian offset per window (std `noise` in normalised units:
    one for all S features or one per feature), the same at every observation step: the policy learns to
    act from states near, not only on, the demonstrations', while the velocities it reads from consecutive
    steps stay as recorded."""
    std = torch.as_tensor(noise, dtype=state.dtype, device=state.device)
    offset = torch.randn(state.shape[0], 1, state.shape[2], device=state.device) * std
    return state + offset / normalizer.scale  # normalised = state * scale + offset


def cosine_with_warmup(step: int, *, warmup: int, total: int) -> float:
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    policy: Policy  # the EMA policy, in eval mode
    steps_done: int
    resumed_from: int  # 0 for a fresh run
    last_metrics: dict[str, float]


def _truncate_metrics(path: Path, after_step: int) -> None:
    """Drop log lines past the checkpoint a run resumes from: those steps are trained again."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= after_step]
    path.write_text("".join(line + "\n" for line in kept))


def _dataset_difference(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The datasets of a checkpoint's and the current metadata, when both name one and their contents differ
    (a dataset moved elsewhere keeps its fingerprint and resumes)."""
    before, now = saved.get("dataset") or {}, current.get("dataset") or {}
    if before.get("fingerprint") and now.get("fingerprint") and before["fingerprint"] != now["fingerprint"]:
        return [f"dataset: {before.get('path')} (fingerprint {before['fingerprint']}) -> {now.get('path')} "
                f"(fingerprint {now['fingerprint']})"]
    return []


def train(
    policy: Policy,
    dataset: BatchSource,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = True,
    progress: bool = True,
    desc: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `policy` (normalisers already fitted) on `dataset`, writing checkpoints and metrics to `out_dir`.

    With `resume`, an existing checkpoint in `out_dir` is continued; it must come from the same policy
    and training configuration (only the logging and checkpoint cadence may differ). `metadata` (e.g. the
    dataset's layout) is stored in every checkpoint."""
    if not bool(policy.state_normalizer.fitted) or not bool(policy.action_normalizer.fitted):
        raise RuntimeError("fit the policy's normalisers on the training data before training")
    if len(dataset) == 0:
        raise ValueError("cannot train on an empty dataset")
    if isinstance(cfg.state_noise, tuple) and len(cfg.state_noise) != policy.config.state_dim:
        raise ValueError(f"TrainConfig.state_noise has {len(cfg.state_noise)} stds, but the policy's state has "
                         f"{policy.config.state_dim} features")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out_dir / CHECKPOINT_NAME, out_dir / METRICS_NAME

    seed_everything(cfg.seed)
    batch_rng = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, warmup=cfg.warmup_steps, total=cfg.steps)
    )
    ema = EMA(policy, max_decay=cfg.ema_max_decay)
    train_cfg = dataclasses.asdict(cfg)

    start = 0
    if resume and ckpt_path.exists():
        data = read_checkpoint(ckpt_path)
        # through the config class, so fields added since the checkpoint was made compare at the values they had
        # before (the class's `values_before_field`, else their defaults)
        diff = config_differences(config_from_dict(data["policy_config"]).to_dict(), policy.config.to_dict())
        saved_cfg = {**dataclasses.asdict(TrainConfig()), **data["train_config"]}  # fields added since, at their defaults
        diff += [d for d in config_differences(saved_cfg, train_cfg) if d.split(":")[0] not in _CADENCE_FIELDS]
        diff += _dataset_difference(data.get("metadata") or {}, metadata or {})
        if diff:
            raise CheckpointError(
                f"{ckpt_path} was made with another configuration ({'; '.join(diff)}); "
                "use another output folder or pass resume=False to start over"
            )
        policy.load_state_dict(data["model"])
        ema.load_state_dict(data["ema"])
        optimizer.load_state_dict(data["optimizer"])
        lr_schedule.load_state_dict(data["lr_schedule"])
        torch.set_rng_state(data["rng"]["torch"])
        batch_rng.set_state(data["rng"]["batches"])
        start = int(data["step"])
        _truncate_metrics(metrics_path, start)
    elif metrics_path.exists():
        metrics_path.unlink()

    def checkpoint(step: int) -> None:
        save_checkpoint(
            ckpt_path,
            {
                "policy_config": policy.config.to_dict(),
                "metadata": metadata or {},
                "train_config": train_cfg,
                "step": step,
                "model": policy.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "lr_schedule": lr_schedule.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "batches": batch_rng.get_state()},
            },
        )

    policy.train()
    last: dict[str, float] = {}
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc or policy.config.method,
               disable=not progress, dynamic_ncols=True)
    step_base = start
    data_s = step_s = 0.0  # since the last log line: reading batches, and whole steps
    with metrics_path.open("a") as log:
        for step in bar:
            started = time.perf_counter()
            indices = torch.randint(0, len(dataset), (cfg.batch_size,), generator=batch_rng)
            batch = dataset.batch(indices)
            data_s += time.perf_counter() - started
            if cfg.perturbs_state:  # after the timing: read_fraction measures reading batches only
                batch = {**batch, "state": perturb_state(batch["state"], policy.state_normalizer, cfg.state_noise)}
            policy.set_training_step(step)
            loss, diagnostics = policy.compute_loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            optimizer.step()
            lr_schedule.step()
            ema.update(policy)
            done = step + 1
            step_s += time.perf_counter() - started
            if done % cfg.log_every == 0 or done == cfg.steps:
                # samples read per second of reading, and the share of step time spent reading
                timing = {"read_samples_per_s": cfg.batch_size * (done - step_base) / max(data_s, 1e-9),
                          "read_fraction": data_s / max(step_s, 1e-9)}
                last = {"step": done, "loss": loss.item(), "grad_norm": float(grad_norm),
                        "lr": lr_schedule.get_last_lr()[0], **{k: float(v) for k, v in diagnostics.items()}, **timing}
                data_s = step_s = 0.0
                step_base = done
                log.write(json.dumps(last) + "\n")
                log.flush()
                shown = {k: v for k, v in last.items() if k not in ("step", "lr", "read_samples_per_s")}
                bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                checkpoint(done)
    for trained in (policy, ema.model):
        trained.set_training_step(None)
    return TrainResult(policy=ema.model.eval(), steps_done=cfg.steps, resumed_from=start, last_metrics=last)
