"""Training: one trainer for all methods, EMA, checkpoints."""

from dbp_control.core.training.checkpoint import CheckpointError, load_policy, read_checkpoint
from dbp_control.core.training.data import ArrayDataset, BatchSource
from dbp_control.core.training.ema import EMA
from dbp_control.core.training.trainer import TrainConfig, TrainResult, seed_everything, train

__all__ = [
    "ArrayDataset",
    "BatchSource",
    "CheckpointError",
    "EMA",
    "TrainConfig",
    "TrainResult",
    "load_policy",
    "read_checkpoint",
    "seed_everything",
    "train",
]
