import pytest
import torch

from dbp_control.core.policies import (
    BCConfig,
    DBPConfig,
    DiffusionConfig,
    DiffusionPolicy,
    config_from_dict,
    make_policy,
)
from dbp_control.core.policies.dbp.drift import sample_unit
from dbp_control.core.policies.diffusion.scheduler import NoiseScheduler, denoise_step
from dbp_control.core.policies.normalizer import MinMaxNormalizer

SHAPE = dict(state_dim=4, action_dim=2, horizon=8, n_obs_steps=2, n_action_steps=4, down_dims=(16, 32))


def _policy(config):
    torch.manual_seed(0)
    policy = make_policy(config)
    policy.fit_normalizers(torch.randn(64, 2, 4) * 3, torch.randn(64, 8, 2) * 5 + 1)
    return policy


@pytest.mark.parametrize("config", [DBPConfig(**SHAPE), DiffusionConfig(**SHAPE), BCConfig(**SHAPE)])
def test_every_method_trains_and_predicts_in_robot_units(config):
    policy = _policy(config)
    batch = {"state": torch.randn(8, 2, 4), "action": torch.randn(8, 8, 2)}
    loss, _ = policy.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in policy.net.parameters())
    chunk = policy.predict_chunk(batch["state"])
    assert chunk.shape == (8, 8, 2)


def test_dbp_is_one_network_call_and_the_noise_controls_the_sample():
    policy = _policy(DBPConfig(**SHAPE)).eval()
    calls = []
    policy.net.register_forward_hook(lambda *_: calls.append(1))
    state = torch.randn(1, 2, 4)
    z = torch.randn(1, 8, 2)
    a, b = policy.predict_chunk(state, noise=z), policy.predict_chunk(state, noise=z)
    assert len(calls) == 2 and policy.nfe == 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, policy.predict_chunk(state, noise=-z))


@pytest.mark.parametrize("config", [DBPConfig(**SHAPE), DiffusionConfig(**SHAPE)])
def test_noise_scale_zero_samples_one_chunk_per_observation(config):
    """Scale 0 removes every noise the sampler draws (z, and DDPM's per-step noise); other scales sample,
    and a bad scale is refused by name."""
    policy = _policy(config).eval()
    state = torch.randn(1, 2, 4)

    def draw(scale, seed):
        return policy.predict_chunk(state, generator=torch.Generator().manual_seed(seed), noise_scale=scale)

    torch.testing.assert_close(draw(0.0, 1), draw(0.0, 2))
    assert not torch.allclose(draw(0.5, 1), draw(0.5, 2))
    assert not torch.allclose(draw(0.5, 1), draw(1.0, 1))
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise_scale must be a finite number >= 0"):
            draw(bad, 1)


def test_dbp_diagnostics_report_drift_forces():
    _, diagnostics = _policy(DBPConfig(**SHAPE)).compute_loss({"state": torch.randn(8, 2, 4), "action": torch.randn(8, 8, 2)})
    assert {"scale", "spread", "force_rms_tau=0.2", "force_rms_tau=0.5", "force_rms_tau=1", "zero_noise_loss"} <= set(diagnostics)
    _, diagnostics = _policy(DBPConfig(**SHAPE, temperatures=(0.02, 0.05))).compute_loss(
        {"state": torch.randn(8, 2, 4), "action": torch.randn(8, 8, 2)})
    assert {"force_rms_tau=0.02", "force_rms_tau=0.05"} <= set(diagnostics) and "force_rms_tau=0.2" not in diagnostics


def test_the_noise_skip_adds_c_times_z_to_the_u_nets_chunk():
    plain, skipped = _policy(DBPConfig(**SHAPE)).eval(), _policy(DBPConfig(**SHAPE, noise_skip=0.5)).eval()
    torch.testing.assert_close(plain.net.state_dict(), skipped.net.state_dict())  # the same weights
    cond, z = plain.encode(torch.randn(3, 2, 4)), torch.randn(3, 8, 2)
    with torch.no_grad():
        torch.testing.assert_close(skipped.sample_normalized(cond, z, None), plain.sample_normalized(cond, z, None) + 0.5 * z)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise_skip must be a finite number >= 0"):
            DBPConfig(**SHAPE, noise_skip=bad)
    assert config_from_dict(DBPConfig(**SHAPE, noise_skip=0.2).to_dict()).noise_skip == 0.2


def test_a_faded_noise_skip_falls_linearly_to_0_and_leaves_the_trained_generator_the_u_net_alone():
    plain, faded = _policy(DBPConfig(**SHAPE)).eval(), _policy(DBPConfig(**SHAPE, noise_skip=0.4, noise_skip_fade_steps=10))
    assert [faded.skip_at(step) for step in (0, 5, 10, 20, None)] == pytest.approx([0.4, 0.2, 0.0, 0.0, 0.0])
    assert _policy(DBPConfig(**SHAPE, noise_skip=0.4)).skip_at(None) == 0.4  # no fade: the skip stays
    cond, z = plain.encode(torch.randn(3, 2, 4)), torch.randn(3, 8, 2)
    with torch.no_grad():
        torch.testing.assert_close(faded.sample_normalized(cond, z, None), plain.sample_normalized(cond, z, None))
        faded.set_training_step(5)
        torch.testing.assert_close(faded.sample_normalized(cond, z, None), plain.sample_normalized(cond, z, None) + 0.2 * z)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="noise_skip_fade_steps must be an integer >= 0"):
            DBPConfig(**SHAPE, noise_skip=0.2, noise_skip_fade_steps=bad)
    with pytest.raises(ValueError, match="noise_skip_fade_steps fades the noise skip out, but noise_skip is 0"):
        DBPConfig(**SHAPE, noise_skip_fade_steps=10)


def test_the_zero_noise_weight_adds_w_times_f0s_squared_distance_to_its_nearest_sample():
    plain, weighted = _policy(DBPConfig(**SHAPE, zero_noise_weight=0.0)), _policy(DBPConfig(**SHAPE, zero_noise_weight=0.5))
    torch.testing.assert_close(plain.net.state_dict(), weighted.net.state_dict())  # the same weights
    cond, action, n_gen = plain.encode(torch.randn(3, 2, 4)), torch.randn(3, 8, 2), DBPConfig.num_generated
    torch.manual_seed(1)
    loss_plain, logged_plain = plain.loss_from_normalized(cond, action)
    torch.manual_seed(1)
    loss, logged = weighted.loss_from_normalized(cond, action)
    assert "zero_noise_loss" not in logged_plain and logged["zero_noise_loss"] > 0
    torch.testing.assert_close(loss, loss_plain + 0.5 * logged["zero_noise_loss"])
    # by hand: the same draws, f(0, obs), and the sample of its own observation nearest to it
    torch.manual_seed(1)
    samples = weighted.generate(torch.randn(3 * n_gen, 8, 2), cond.repeat_interleave(n_gen, dim=0)).reshape(3, n_gen, 16)
    zero = weighted.generate(torch.zeros(3, 8, 2), cond).reshape(3, 16)
    nearest = torch.stack([min(samples[i], key=lambda sample: float((sample - zero[i]).detach().norm())) for i in range(3)])
    expected = (((zero - nearest) / sample_unit(logged["scale"], 16)) ** 2).mean()
    torch.testing.assert_close(logged["zero_noise_loss"], expected)
    # the samples are the target, not trained by it: the term adds the gradient of f(0, obs)'s distance to them only
    def grads(value):
        return torch.autograd.grad(value, list(weighted.net.parameters()), allow_unused=True)

    with_term, term_alone = grads(loss), grads(0.5 * (((zero - nearest.detach()) / sample_unit(logged["scale"], 16)) ** 2).mean())
    plain_grads = torch.autograd.grad(loss_plain, list(plain.net.parameters()), allow_unused=True)
    for total, base, term in zip(with_term, plain_grads, term_alone):
        if term is not None:
            torch.testing.assert_close(total, base + term)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="zero_noise_weight must be a finite number >= 0"):
            DBPConfig(**SHAPE, zero_noise_weight=bad)
    assert config_from_dict(DBPConfig(**SHAPE, zero_noise_weight=0.5).to_dict()).zero_noise_weight == 0.5
    # on by default; a config saved before the term existed trained without it, and reads back so
    saved = DBPConfig(**SHAPE).to_dict()
    assert saved.pop("zero_noise_weight") == 1.0
    assert config_from_dict(saved).zero_noise_weight == 0.0


def test_bc_ignores_noise():
    policy = _policy(BCConfig(**SHAPE)).eval()
    state = torch.randn(1, 2, 4)
    torch.testing.assert_close(policy.predict_chunk(state, noise=torch.randn(1, 8, 2)), policy.predict_chunk(state))


def test_diffusion_samplers_count_network_calls():
    policy = _policy(DiffusionConfig(**SHAPE)).eval()
    assert isinstance(policy, DiffusionPolicy)
    calls = []
    policy.net.register_forward_hook(lambda *_: calls.append(1))
    policy.predict_chunk(torch.randn(1, 2, 4))
    assert len(calls) == policy.nfe == 100
    policy.use_sampler("ddim", 10)
    calls.clear()
    policy.predict_chunk(torch.randn(1, 2, 4))
    assert len(calls) == policy.nfe == 10
    with pytest.raises(ValueError, match="unknown diffusion sampler"):
        policy.use_sampler("euler", 10)


def test_scheduler_timesteps_and_noise():
    sched = NoiseScheduler(100)
    assert sched.timesteps(10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert sched.timesteps(100)[0] == 99
    assert float(sched.alphas_cumprod[0]) > 0.99 and float(sched.alphas_cumprod[-1]) < 1e-3
    x0 = torch.ones(4, 8, 2) * 0.5
    # DDIM given the true noise lands exactly on the forward process at the next time step (50 -> 40 of 10
    # steps), and its last step (t = 0) on the clean sample
    noise = torch.randn_like(x0)
    table = sched.sampler_table("ddim", 10).float()
    assert table[4, 0] == 50 and table[-1, 0] == 0
    xt = sched.add_noise(x0, noise, torch.full((4,), 50))
    torch.testing.assert_close(denoise_step(xt, noise, table[4], None), sched.add_noise(x0, noise, torch.full((4,), 40)),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(denoise_step(sched.add_noise(x0, noise, torch.zeros(4, dtype=torch.long)), noise,
                                            table[-1], None), x0, rtol=1e-4, atol=1e-4)
    # DDPM adds noise at every step but the last
    ddpm = sched.sampler_table("ddpm", 100)
    assert ddpm.shape == (100, 6) and (ddpm[:-1, 5] > 0).all() and ddpm[-1, 5] == 0
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        sched.sampler_table("euler", 10)


def test_normalizer_round_trip_and_range():
    data = torch.randn(100, 3) * torch.tensor([1.0, 10.0, 0.0]) + 5
    norm = MinMaxNormalizer(3).fit(data)
    n = norm.normalize(data)
    assert n[:, :2].min() >= -1 - 1e-5 and n[:, :2].max() <= 1 + 1e-5
    assert torch.allclose(n[:, 2], torch.zeros(100))  # a constant feature is centred, not divided by 0
    torch.testing.assert_close(norm.unnormalize(n), data)


def test_normalizer_errors():
    norm = MinMaxNormalizer(2)
    with pytest.raises(RuntimeError, match="before fit"):
        norm.normalize(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="NaN"):
        norm.fit(torch.tensor([[0.0, float("nan")]]))
    norm.fit(torch.randn(10, 2))
    with pytest.raises(ValueError, match="expects 2 features"):
        norm.normalize(torch.zeros(1, 3))


def test_bad_batches_are_named():
    policy = _policy(DBPConfig(**SHAPE))
    state, action = torch.randn(8, 2, 4), torch.randn(8, 8, 2)
    bad = action.clone()
    bad[3, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="'action' contains NaN"):
        policy.compute_loss({"state": state, "action": bad})
    with pytest.raises(ValueError, match=r"action must be \[B, 8, 2\]"):
        policy.compute_loss({"state": state, "action": torch.randn(8, 16, 2)})
    with pytest.raises(KeyError, match="no 'action'"):
        policy.compute_loss({"state": state})
    with pytest.raises(ValueError, match="noise must have shape"):
        policy.predict_chunk(state, noise=torch.randn(8, 4, 2))


def test_config_round_trip_and_errors():
    config = DBPConfig(**SHAPE)
    assert config_from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown policy method 'flow'"):
        config_from_dict({**config.to_dict(), "method": "flow"})
    with pytest.raises(ValueError, match=r"no fields \['wings'\]"):
        config_from_dict({**config.to_dict(), "wings": 2})
    with pytest.raises(ValueError, match="unknown backbone preset"):
        DBPConfig(state_dim=4, action_dim=2, preset="medium")
    # executed from the newest observation's step: a window of 8 with 2 observations leaves 7
    with pytest.raises(ValueError, match=r"n_action_steps \(8\) cannot exceed .* horizon - n_obs_steps \+ 1 \(7\)"):
        DBPConfig(state_dim=4, action_dim=2, horizon=8, n_obs_steps=2, n_action_steps=8)
    assert DBPConfig(state_dim=4, action_dim=2, horizon=8, n_obs_steps=1, n_action_steps=8).n_action_steps == 8
    with pytest.raises(ValueError, match="num_generated"):
        DBPConfig(state_dim=4, action_dim=2, num_generated=1)
    assert DBPConfig(state_dim=4, action_dim=2).down_dims == (64, 128, 256)
    assert DBPConfig(state_dim=4, action_dim=2, preset="paper").down_dims == (256, 512, 1024)
