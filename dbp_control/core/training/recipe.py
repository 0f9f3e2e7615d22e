"""`dbp train`: a policy trained on a compiled dataset, for any method, with state or image observations.

The checkpoint's metadata records what the policy needs to run on the robot: the dataset's layout
(joint names per arm, cameras and image sizes, topics), its step rate, which state keys the policy reads
and a fingerprint of the dataset it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dbp_control.core.data.dataset import Dataset, DatasetError, WindowDataset
from dbp_control.core.policies import available_methods, config_from_dict, make_policy
from dbp_control.core.policies.dbp.drift import DEFAULT_TEMPERATURES
from dbp_control.core.policies.dbp.modeling import DBPConfig, check_dbp_settings
from dbp_control.core.training.trainer import METRICS_NAME, TrainConfig, TrainResult, seed_everything, train

OBSERVATIONS = ("state", "image")

# what a DBP recipe's own fields are when left alone: another method refuses any other value
DBP_DEFAULTS: dict[str, Any] = {"num_generated": DBPConfig.num_generated, "temperatures": DEFAULT_TEMPERATURES,
                                "neighbour_positives": DBPConfig.neighbour_positives,
                                "noise_skip": DBPConfig.noise_skip,
                                "noise_skip_fade_steps": DBPConfig.noise_skip_fade_steps,
                                "zero_noise_weight": DBPConfig.zero_noise_weight}


@dataclass(frozen=True)
class TrainRecipe:
    """Everything `dbp train` sets: the policy's shape and method, and the optimisation."""

    method: str = "dbp"  # dbp | diffusion | bc
    obs: str = "state"  # state: joints (+ object poses when the dataset has them); image: joints + cameras
    preset: str = "small"
    down_dims: tuple[int, ...] = ()  # empty: the preset's widths
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    ema_max_decay: float = 0.99
    seed: int = 0
    state_noise: float = 0.0  # std of a random offset on each window's observed state, normalised units
    object_noise: float | None = None  # its std on the object poses instead (None: state_noise's)
    # DBP only: samples per observation, kernel temperatures of the drift field, and how many nearest
    # other demonstrations' chunks join each window's own as positives
    num_generated: int = DBPConfig.num_generated
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    neighbour_positives: int = DBPConfig.neighbour_positives
    noise_skip: float = DBPConfig.noise_skip  # c: the generator is c * z + U-Net(z, obs)
    noise_skip_fade_steps: int = DBPConfig.noise_skip_fade_steps  # N > 0: c falls to 0 over the first N steps
    zero_noise_weight: float = DBPConfig.zero_noise_weight  # w > 0: f(0, obs) pulled onto its nearest sample

    def dbp_settings(self) -> dict[str, Any]:
        """The DBP-only fields, as DBPConfig takes them."""
        return {"num_generated": self.num_generated, "temperatures": tuple(self.temperatures),
                "neighbour_positives": self.neighbour_positives, "noise_skip": self.noise_skip,
                "noise_skip_fade_steps": self.noise_skip_fade_steps, "zero_noise_weight": self.zero_noise_weight}

    def __post_init__(self) -> None:
        if self.method not in available_methods():
            raise ValueError(f"unknown method {self.method!r}; known: {available_methods()}")
        if self.method != "dbp" and self.dbp_settings() != DBP_DEFAULTS:
            *names, last = DBP_DEFAULTS
            raise ValueError(f"{', '.join(names)} and {last} are DBP's; method {self.method!r} has none of them")
        check_dbp_settings(**self.dbp_settings())
        if self.noise_skip_fade_steps > self.steps:  # the trained generator is the U-Net alone only after it
            raise ValueError(f"noise_skip_fade_steps ({self.noise_skip_fade_steps}) must end within the training's "
                             f"{self.steps} steps")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        for name in ("state_noise", "object_noise"):  # object_noise None: state_noise's
            std = getattr(self, name)
            if std is not None and (not math.isfinite(std) or std < 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {std}")
        if self.object_noise is not None and self.obs != "state":
            raise ValueError(f"object_noise offsets object poses, which only state observations carry; "
                             f"this recipe observes {self.obs!r}")
        if self.obs not in OBSERVATIONS:
            raise ValueError(f"unknown observation type {self.obs!r}; known: {list(OBSERVATIONS)}")


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 of the dataset's attributes (layout, episodes, split, statistics): changes with its content."""
    return hashlib.sha256(json.dumps(dict(dataset.root.attrs), sort_keys=True).encode()).hexdigest()[:16]


def windows_for(dataset: Dataset, recipe: TrainRecipe, split: str, *, neighbours: bool = False) -> WindowDataset:
    """The recipe's windows of `split`; with `neighbours`, carrying the recipe's neighbour positives."""
    if recipe.obs == "image" and not dataset.cameras:
        raise DatasetError(f"{dataset.path} has no cameras; build it with cameras or train with --obs state")
    return WindowDataset(dataset, split, n_obs_steps=recipe.n_obs_steps, horizon=recipe.horizon,
                         n_action_steps=recipe.n_action_steps,
                         use_objects=recipe.obs == "state" and bool(dataset.layout.get("objects")),
                         cameras=dataset.cameras if recipe.obs == "image" else (),
                         neighbours=recipe.neighbour_positives if neighbours else 0)


def state_offset_stds(recipe: TrainRecipe, windows: WindowDataset) -> float | tuple[float, ...]:
    """TrainConfig.state_noise for `recipe`: its state_noise on every feature, or, with object_noise, that on
    the object poses (the columns after the joints) and state_noise on the joints."""
    if recipe.object_noise is None:
        return recipe.state_noise
    if not windows.use_objects:
        raise DatasetError(f"{windows.dataset.path} has no object poses for object_noise to offset; build it with "
                           "--objects or train without --object-noise")
    objects = windows.state_dim - windows.joint_dim
    return (recipe.state_noise,) * windows.joint_dim + (recipe.object_noise,) * objects


@dataclass(frozen=True)
class RecipeResult:
    train: TrainResult
    validation_loss: float | None  # the EMA policy's loss on the validation split (None without one)
    loss_plot: Path


def train_on_dataset(dataset_path: Path, recipe: TrainRecipe, out_dir: Path, *, resume: bool = True,
                     progress: bool = True) -> RecipeResult:
    dataset = Dataset(dataset_path)
    windows = windows_for(dataset, recipe, "train", neighbours=True)
    image_size = next(iter(dataset.layout["cameras"].values()))["size"] if windows.images else (96, 96)
    method_fields = {"dbp": recipe.dbp_settings(), "bc": {}, "diffusion": {"sampler": "ddpm"}}[recipe.method]
    config = config_from_dict({
        "method": recipe.method, "state_dim": windows.state_dim, "action_dim": windows.action_dim,
        "horizon": recipe.horizon, "n_obs_steps": recipe.n_obs_steps, "n_action_steps": recipe.n_action_steps,
        "cameras": tuple(windows.images), "image_shape": tuple(image_size), "preset": recipe.preset,
        "down_dims": recipe.down_dims, **method_fields,
    })
    seed_everything(recipe.seed)  # the initial weights too: one seed, one training
    policy = make_policy(config)
    policy.fit_normalizers(windows.state, windows.action)
    metadata = {
        "recipe": asdict(recipe),
        "dataset": {"path": str(dataset.path.resolve()), "fingerprint": dataset_fingerprint(dataset),
                    "layout": dataset.layout, "rate_hz": dataset.build.get("rate_hz"),
                    "episodes": len(dataset.episodes), "tasks": sorted({str(e.get("task")) for e in dataset.episodes})},
        "state_keys": ["joints", "objects"] if windows.use_objects else ["joints"],
    }
    cfg = TrainConfig(steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, ema_max_decay=recipe.ema_max_decay,
                      seed=recipe.seed, state_noise=state_offset_stds(recipe, windows),
                      checkpoint_every=max(1, min(500, recipe.steps // 4)),
                      log_every=max(1, min(25, recipe.steps // 10)))
    result = train(policy, windows, cfg, out_dir, resume=resume, progress=progress, desc=f"train {recipe.method}",
                   metadata=metadata)
    val = None
    if dataset.split.get("val"):
        # own demonstrations only: a validation split is too small to draw neighbour positives from
        val = validation_loss(result.policy, windows_for(dataset, recipe, "val"), seed=recipe.seed)
        log_validation(Path(out_dir) / METRICS_NAME, recipe.steps, val)
    plot = Path(out_dir) / "loss.png"
    plot_losses(Path(out_dir) / METRICS_NAME, plot, title=f"{recipe.method} on {dataset.path.name}", val_loss=val)
    return RecipeResult(result, val, plot)


def log_validation(metrics_path: Path, step: int, val_loss: float) -> None:
    """Append the validation record of `step`, unless the log has one for it already (a finished run
    resumed again does no training, and its validation is the same seeded number)."""
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            if record.get("step") == step and "val_loss" in record:
                return
    with metrics_path.open("a") as log:
        log.write(json.dumps({"step": step, "val_loss": val_loss}) + "\n")


@torch.no_grad()
def validation_loss(policy: torch.nn.Module, windows: WindowDataset, *, batches: int = 8, batch_size: int = 64,
                    seed: int = 0) -> float:
    """The training loss of `policy` on held-out windows (mean over a few fixed random batches)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the losses draw noise
    losses = [policy.compute_loss(windows.batch(torch.randint(len(windows), (batch_size,), generator=generator)))[0]
              for _ in range(batches)]
    return float(torch.stack(losses).mean())


def plot_losses(metrics_path: Path, out: Path, *, title: str, val_loss: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for line in metrics_path.read_text().splitlines() if line.strip()
            for row in [json.loads(line)] if "loss" in row]
    if not rows:
        return
    force_keys = sorted(k for k in rows[0] if k.startswith("force_rms"))
    fig, axes = plt.subplots(1, 2 if force_keys else 1, figsize=(10 if force_keys else 5, 3.5), squeeze=False)
    steps = [r["step"] for r in rows]
    axes[0][0].plot(steps, [r["loss"] for r in rows])
    if val_loss is not None:
        axes[0][0].scatter([steps[-1]], [val_loss], color="C3", zorder=3, label=f"validation {val_loss:.3g}")
        axes[0][0].legend()
    axes[0][0].set(xlabel="step", ylabel="loss", title=title)
    for key in force_keys:  # the drift's un-normalised strength: shrinks as samples approach the data
        axes[0][1].semilogy(steps, [r[key] for r in rows], label=key.replace("force_rms_", ""))
    if force_keys and "spread" in rows[0]:  # metrics logged before 2026-12-01 have no spread
        axes[0][1].semilogy(steps, [r["spread"] for r in rows], "k--", label="spread (collapsed: << 1)")
    if force_keys:
        axes[0][1].set(xlabel="step", ylabel="drift force RMS / spread", title="drift force per temperature")
        axes[0][1].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
