"""Moving the image part of the U-Net's FiLM conditioning from the head to the encoders, exactly.

Every FiLM block computes W @ mish(cond) + b, and cond holds, per observation step, the normalised state
and one feature vector per camera. Mish acts entry by entry, so the product splits by columns:

    W @ mish(cond) = W_state @ mish(state entries) + sum over cameras c and steps s of W_cs @ mish(f_cs)

A camera's term depends only on its features, which change once per camera frame. So the encoder graph
also multiplies the new features by W_cs of every block (for each step s the frame may occupy), and the
head, which runs at the control rate, reads only the state columns: a third of the head's weights of a
three-camera policy and its largest matrices stay out of the control loop.

The head's FiLM layers, all fed by the same condition, become one Linear (`ConditionalUnet1D.merged_film`):
one node for the graph instead of a Mish, a Gemm and an Add per block.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dbp_control.core.policies import Policy
from dbp_control.core.policies.nets.unet1d import FiLMResBlock


@dataclass
class FactoredFiLM:
    head_policy: Policy  # a copy whose one merged FiLM layer reads only the state (and time-step) columns
    projections: dict[str, torch.Tensor]  # camera -> [To, film width, F]: its features' FiLM term per step

    @property
    def film_width(self) -> int:
        return self.head_policy.net.film_width


def condition_columns(policy: Policy) -> tuple[list[int], dict[str, list[list[int]]]]:
    """Columns of the U-Net's FiLM input: the state's and the time step's (kept in the head, in `cond`
    order), and per camera and observation step its features'."""
    c = policy.config
    features = c.image_feature_dim if c.cameras else 0
    per_step = c.state_dim + features * len(c.cameras)
    kept = [s * per_step + k for s in range(c.n_obs_steps) for k in range(c.state_dim)]
    step_embedding = c.n_obs_steps * per_step  # diffusion appends its time-step embedding after the observation
    width = policy.net.film_blocks()[0].film[1].in_features
    kept += list(range(step_embedding, width))
    cameras = {cam: [[s * per_step + c.state_dim + i * features + k for k in range(features)]
                     for s in range(c.n_obs_steps)] for i, cam in enumerate(c.cameras)}
    return kept, cameras


def factor_film(policy: Policy) -> FactoredFiLM:
    """The head copy and the per-camera projections; `policy` itself is left as it is."""
    kept, cameras = condition_columns(policy)
    head_policy = copy.deepcopy(policy)
    blocks: list[FiLMResBlock] = head_policy.net.film_blocks()
    weight = torch.cat([block.film[1].weight.detach() for block in blocks])  # [film width, cond width]
    bias = torch.cat([block.film[1].bias.detach() for block in blocks])
    projections = {cam: torch.stack([weight[:, columns] for columns in per_step]) for cam, per_step in cameras.items()}
    merged = nn.Linear(len(kept), weight.shape[0])
    with torch.no_grad():
        merged.weight.copy_(weight[:, kept])
        merged.bias.copy_(bias)
    head_policy.net.merged_film = nn.Sequential(nn.Mish(), merged)
    for block in blocks:  # read by nothing now; gone, so nothing can read them by mistake
        del block.film
    return FactoredFiLM(head_policy.eval(), projections)


def film_terms(features: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """features [B, F] of one camera frame, projection [To, W, F] -> its FiLM term at each step [B, To, W]."""
    return torch.einsum("swf,bf->bsw", projection, F.mish(features))
