"""What the trainer reads: any source of training batches by index."""

from __future__ import annotations

from typing import Protocol

import torch


class BatchSource(Protocol):
    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Samples at `indices`: state [B, To, S], action [B, T, D], optional images {cam: [B, To, 3, H, W]}."""
        ...


class ArrayDataset:
    """In-memory samples, e.g. generated demonstrations."""

    def __init__(
        self, *, state: torch.Tensor, action: torch.Tensor, images: dict[str, torch.Tensor] | None = None
    ) -> None:
        if state.ndim != 3 or action.ndim != 3:
            raise ValueError(f"state must be [N, To, S] and action [N, T, D]; got {tuple(state.shape)} and {tuple(action.shape)}")
        if len(state) != len(action) or any(len(v) != len(state) for v in (images or {}).values()):
            raise ValueError("state, action and images must hold the same number of samples")
        if len(state) == 0:
            raise ValueError("dataset is empty")
        self.state, self.action, self.images = state.float(), action.float(), images or {}

    def __len__(self) -> int:
        return len(self.state)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        out: dict[str, torch.Tensor | dict[str, torch.Tensor]] = {"state": self.state[indices], "action": self.action[indices]}
        if self.images:
            out["images"] = {cam: img[indices] for cam, img in self.images.items()}
        return out
