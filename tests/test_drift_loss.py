"""drift_loss against a plain-numpy loop written from the issue's definition, its stop-gradient
structure, and the direction of the field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dbp_control import drift_loss
from dbp_control.core.policies.dbp.drift import DEFAULT_TEMPERATURES


def reference_drift(gen, pos, temperatures, neg=None, w_gen=None, w_pos=None, w_neg=None):
    """Loop-by-loop drift V [B, G, N], scale s and sx, and per-temperature force RMS (float64 numpy)."""
    B, G, N = gen.shape
    neg = np.zeros((B, 0, N)) if neg is None else neg
    K, P = neg.shape[1], pos.shape[1]
    w_gen = np.ones((B, G)) if w_gen is None else w_gen
    w_neg = np.ones((B, K)) if w_neg is None else w_neg
    w_pos = np.ones((B, P)) if w_pos is None else w_pos
    targets = np.concatenate([gen, neg, pos], axis=1)
    weights = np.concatenate([w_gen, w_neg, w_pos], axis=1)
    T = G + K + P
    d = np.zeros((B, G, T))
    for b in range(B):
        for i in range(G):
            for j in range(T):
                sq = gen[b, i] @ gen[b, i] + targets[b, j] @ targets[b, j] - 2 * gen[b, i] @ targets[b, j]
                d[b, i, j] = math.sqrt(max(sq, 1e-8))
    s = (d * weights[:, None, :]).mean() / weights.mean()
    sx = max(s / math.sqrt(N), 1e-3)
    dn = d / max(s, 1e-3)
    for b in range(B):
        for i in range(G):
            dn[b, i, i] += 100.0
    xs, ts = gen / sx, targets / sx
    V = np.zeros_like(xs)
    rms = []
    for tau in temperatures:
        F = np.zeros_like(xs)
        for b in range(B):
            logits = -dn[b] / tau
            R = np.exp(logits - logits.max(axis=1, keepdims=True))
            R /= R.sum(axis=1, keepdims=True)
            C = np.exp(logits - logits.max(axis=0, keepdims=True))
            C /= C.sum(axis=0, keepdims=True)
            A = np.sqrt(np.maximum(R * C, 1e-6)) * weights[b][None, :]
            for i in range(G):
                for p in range(G + K, T):
                    for n in range(G + K):
                        F[b, i] += A[i, p] * A[i, n] * (ts[b, p] - ts[b, n])
        ms = (F**2).mean()
        rms.append(math.sqrt(ms))
        V += F / math.sqrt(max(ms, 1e-8))
    return V, s, sx, rms


TEMPS = (0.02, 0.05, 0.2)


def _random_case(seed: int, B=2, G=3, P=2, N=5, K=0):
    rng = np.random.default_rng(seed)
    gen = rng.normal(size=(B, G, N))
    pos = rng.normal(loc=0.7, size=(B, P, N))
    neg = rng.normal(size=(B, K, N)) if K else None
    return gen, pos, neg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_loop(seed):
    gen, pos, _ = _random_case(seed)
    V, s, sx, rms = reference_drift(gen, pos, TEMPS)
    loss, diag = drift_loss(torch.tensor(gen), torch.tensor(pos), TEMPS)
    # at gen = x the residual gen/sx - (x/sx + V) is -V
    expected = (V**2).mean(axis=(1, 2))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-9)
    assert diag["scale"].item() == pytest.approx(s, rel=1e-12)
    for tau, r in zip(TEMPS, rms):
        assert diag[f"force_rms_tau={tau:g}"].item() == pytest.approx(r, rel=1e-9)


def test_matches_numpy_loop_with_negatives_and_weights():
    gen, pos, neg = _random_case(3, B=2, G=4, P=1, N=3, K=2)
    rng = np.random.default_rng(4)
    w_gen, w_pos, w_neg = rng.uniform(0.5, 2, (2, 4)), rng.uniform(0.5, 2, (2, 1)), rng.uniform(0.5, 2, (2, 2))
    V, s, _, _ = reference_drift(gen, pos, TEMPS, neg, w_gen, w_pos, w_neg)
    t = torch.tensor
    loss, diag = drift_loss(t(gen), t(pos), TEMPS, neg=t(neg), gen_weights=t(w_gen), pos_weights=t(w_pos), neg_weights=t(w_neg))
    np.testing.assert_allclose(loss.numpy(), (V**2).mean(axis=(1, 2)), rtol=1e-9)
    assert diag["scale"].item() == pytest.approx(s, rel=1e-12)


def test_spread_is_the_samples_mutual_distance_over_their_distance_to_the_demonstrations():
    gen, pos, neg = _random_case(6, B=2, G=4, P=2, N=3, K=2)
    mutual = np.linalg.norm(gen[:, :, None] - gen[:, None], axis=-1)
    to_data = np.linalg.norm(gen[:, :, None] - pos[:, None], axis=-1)
    expected = mutual[:, ~np.eye(4, dtype=bool)].mean() / to_data.mean()
    _, diag = drift_loss(torch.tensor(gen), torch.tensor(pos), TEMPS, neg=torch.tensor(neg))
    assert diag["spread"].item() == pytest.approx(expected, rel=1e-9)
    # samples collapsed onto one point far from the demonstrations: the regime where training stalls
    collapsed = torch.tensor(gen[:, :1]).repeat(1, 4, 1) + 1e-3 * torch.randn(2, 4, 3, dtype=torch.float64)
    assert drift_loss(collapsed, torch.tensor(pos) + 5, TEMPS)[1]["spread"] < 0.01


def test_gradient_flows_through_gen_only_with_a_fixed_target():
    gen_np, pos_np, _ = _random_case(5, B=3, G=4, P=1, N=6)
    V, _, sx, _ = reference_drift(gen_np, pos_np, TEMPS)
    gen = torch.tensor(gen_np, requires_grad=True)
    pos = torch.tensor(pos_np, requires_grad=True)
    loss, _ = drift_loss(gen, pos, TEMPS)
    loss.sum().backward()
    G, N = gen_np.shape[1:]
    # d/dgen mean((gen/sx - target)^2) with target and sx held fixed = 2 (gen/sx - target) / (sx G N) = -2V / (sx G N)
    np.testing.assert_allclose(gen.grad.numpy(), -2 * V / (sx * G * N), rtol=1e-8, atol=1e-12)
    assert pos.grad is None


def test_field_points_toward_the_data_in_1d():
    gen = torch.tensor([[[-2.0], [-1.5], [-1.0], [-0.5]]])
    pos = torch.tensor([[[3.0]]])
    loss, _ = drift_loss(gen.clone().requires_grad_(True), pos)
    g = gen.clone().requires_grad_(True)
    drift_loss(g, pos)[0].sum().backward()
    assert (g.grad < 0).all(), "descending the loss must move every sample up, toward the positive at 3"
    # and from the other side
    g = (-gen).clone().requires_grad_(True)
    drift_loss(g, -pos)[0].sum().backward()
    assert (g.grad > 0).all()


@pytest.mark.parametrize("temperatures", [TEMPS, DEFAULT_TEMPERATURES], ids=["narrow", "default"])
def test_descending_the_loss_splits_particles_onto_both_modes_and_forces_fall(temperatures):
    """Free particles (no network) for one observation whose data is bimodal {-1, +1}: descending the
    loss puts about half on each mode, and the force RMS (the convergence signal) falls at every tau."""
    torch.manual_seed(0)
    particles = torch.nn.Parameter(torch.randn(1, 64, 1))
    pos = torch.where(torch.rand(1, 128, 1) < 0.5, -1.0, 1.0) + 0.05 * torch.randn(1, 128, 1)
    steps = 400
    opt = torch.optim.Adam([particles], lr=0.02)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    _, first = drift_loss(particles.detach(), pos, temperatures)
    for _ in range(steps):
        opt.zero_grad()
        loss, last = drift_loss(particles, pos, temperatures)
        loss.mean().backward()
        opt.step()
        schedule.step()
    x = particles.detach().flatten()
    assert ((x - 1).abs() < 0.2).float().mean() > 0.35
    assert ((x + 1).abs() < 0.2).float().mean() > 0.35
    for tau in temperatures:
        key = f"force_rms_tau={tau:g}"
        assert last[key] < 0.6 * first[key], key


@pytest.mark.parametrize(
    "gen, pos, kwargs, message",
    [
        (torch.zeros(2, 3), torch.zeros(2, 1, 3), {}, "gen must be"),
        (torch.zeros(2, 3, 4), torch.zeros(3, 1, 4), {}, "batch size"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 1, 5), {}, "N=5"),
        (torch.zeros(2, 3, 4, dtype=torch.int64), torch.zeros(2, 1, 4), {}, "floating-point"),
        (torch.full((2, 3, 4), float("nan")), torch.zeros(2, 1, 4), {}, "NaN"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 1, 4), {"gen_weights": torch.ones(2, 2)}, "gen_weights"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 1, 4), {"temperatures": ()}, "temperatures"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 1, 4, dtype=torch.float64), {}, "dtype"),
    ],
)
def test_bad_input_is_named(gen, pos, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        drift_loss(gen, pos, **kwargs)
