import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dbp_control.core.policies import BCConfig, DBPConfig, make_policy
from dbp_control.core.training import (
    EMA,
    ArrayDataset,
    CheckpointError,
    TrainConfig,
    load_policy,
    read_checkpoint,
    train,
)
from dbp_control.core.training.trainer import CHECKPOINT_NAME, METRICS_NAME, cosine_with_warmup, perturb_state

SHAPE = dict(state_dim=3, action_dim=2, horizon=8, n_obs_steps=1, n_action_steps=4, down_dims=(16, 32))


def _dataset(n=32):
    g = torch.Generator().manual_seed(0)
    return ArrayDataset(state=torch.randn(n, 1, 3, generator=g), action=torch.randn(n, 8, 2, generator=g))


def _fresh_policy(config=None):
    torch.manual_seed(123)
    policy = make_policy(config or DBPConfig(**SHAPE))
    ds = _dataset()
    policy.fit_normalizers(ds.state, ds.action)
    return policy


class Interrupted(Exception):
    pass


class DiesAfter:
    """A dataset that dies after `n` batches, as a killed training process would."""

    def __init__(self, inner, n):
        self.inner, self.left = inner, n

    def __len__(self):
        return len(self.inner)

    def batch(self, indices):
        if self.left == 0:
            raise Interrupted
        self.left -= 1
        return self.inner.batch(indices)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    cfg = TrainConfig(steps=8, batch_size=4, checkpoint_every=3, log_every=1, warmup_steps=2)
    straight = train(_fresh_policy(), _dataset(), cfg, tmp_path / "straight", progress=False)

    with pytest.raises(Interrupted):
        train(_fresh_policy(), DiesAfter(_dataset(), 5), cfg, tmp_path / "killed", progress=False)
    assert read_checkpoint(tmp_path / "killed" / CHECKPOINT_NAME)["step"] == 3
    resumed = train(_fresh_policy(), _dataset(), cfg, tmp_path / "killed", progress=False)
    assert resumed.resumed_from == 3
    for a, b in zip(straight.policy.state_dict().values(), resumed.policy.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / METRICS_NAME).read_text().splitlines()]
    assert steps == list(range(1, 9))  # the metrics of steps redone after the crash appear once


def test_resuming_with_another_config_is_refused(tmp_path):
    cfg = TrainConfig(steps=2, batch_size=4)
    train(_fresh_policy(), _dataset(), cfg, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="lr: 0.001 -> 0.01"):
        train(_fresh_policy(), _dataset(), TrainConfig(steps=2, batch_size=4, lr=1e-2), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="num_generated: 4 -> 8"):
        train(_fresh_policy(DBPConfig(**SHAPE, num_generated=8)), _dataset(), cfg, tmp_path, progress=False)
    # a field added to the config since the checkpoint was made compares at its default
    saved = read_checkpoint(tmp_path / CHECKPOINT_NAME)
    del saved["policy_config"]["neighbour_positives"]
    torch.save(saved, tmp_path / CHECKPOINT_NAME)
    train(_fresh_policy(), _dataset(), cfg, tmp_path, progress=False)
    del saved["train_config"]["state_noise"]  # the same for a training field
    torch.save(saved, tmp_path / CHECKPOINT_NAME)
    train(_fresh_policy(), _dataset(), cfg, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="state_noise: 0.0 -> 0.1"):
        train(_fresh_policy(), _dataset(), TrainConfig(steps=2, batch_size=4, state_noise=0.1), tmp_path, progress=False)
    # a different logging cadence is not a different experiment
    train(_fresh_policy(), _dataset(), TrainConfig(steps=2, batch_size=4, log_every=1), tmp_path, progress=False)
    # one whose default changed since compares at the value it had before: a checkpoint saved before the z = 0
    # term existed trained without it, so today's default (1) does not resume it
    del saved["policy_config"]["zero_noise_weight"]
    torch.save(saved, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(CheckpointError, match="zero_noise_weight: 0.0 -> 1.0"):
        train(_fresh_policy(), _dataset(), cfg, tmp_path, progress=False)
    train(_fresh_policy(DBPConfig(**SHAPE, zero_noise_weight=0.0)), _dataset(), cfg, tmp_path, progress=False)


def test_resuming_on_another_dataset_is_refused(tmp_path):
    cfg = TrainConfig(steps=2, batch_size=4)
    train(_fresh_policy(), _dataset(), cfg, tmp_path, progress=False,
          metadata={"dataset": {"path": "/data/a.zarr", "fingerprint": "aaaa"}})
    with pytest.raises(CheckpointError, match=r"dataset: /data/a.zarr \(fingerprint aaaa\) -> /data/b.zarr "
                                              r"\(fingerprint bbbb\)"):
        train(_fresh_policy(), _dataset(), cfg, tmp_path, progress=False,
              metadata={"dataset": {"path": "/data/b.zarr", "fingerprint": "bbbb"}})
    # the same content elsewhere resumes
    resumed = train(_fresh_policy(), _dataset(), cfg, tmp_path, progress=False,
                    metadata={"dataset": {"path": "/moved/a.zarr", "fingerprint": "aaaa"}})
    assert resumed.resumed_from == 2


def test_load_policy_restores_the_ema_weights(tmp_path):
    result = train(_fresh_policy(BCConfig(**SHAPE)), _dataset(), TrainConfig(steps=3, batch_size=4), tmp_path, progress=False)
    loaded = load_policy(tmp_path / CHECKPOINT_NAME)
    state = torch.randn(2, 1, 3)
    torch.testing.assert_close(loaded.predict_chunk(state), result.policy.predict_chunk(state))


def test_broken_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_policy(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    train(_fresh_policy(), _dataset(), TrainConfig(steps=1, batch_size=4), tmp_path / "run", progress=False)
    truncated.write_bytes((tmp_path / "run" / CHECKPOINT_NAME).read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_policy(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(CheckpointError, match="not a dbp_control checkpoint"):
        load_policy(foreign)


def test_training_refuses_nan_and_unfitted_policies(tmp_path):
    ds = _dataset()
    ds.action[5, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train(_fresh_policy(), ds, TrainConfig(steps=50, batch_size=32), tmp_path, progress=False)
    with pytest.raises(RuntimeError, match="fit the policy's normalisers"):
        train(make_policy(DBPConfig(**SHAPE)), _dataset(), TrainConfig(steps=1), tmp_path, progress=False)


def test_dataset_and_config_validation():
    with pytest.raises(ValueError, match="same number of samples"):
        ArrayDataset(state=torch.zeros(3, 1, 2), action=torch.zeros(4, 8, 2))
    with pytest.raises(ValueError, match="empty"):
        ArrayDataset(state=torch.zeros(0, 1, 2), action=torch.zeros(0, 8, 2))
    with pytest.raises(ValueError, match="steps must be positive"):
        TrainConfig(steps=0)
    for bad in (-0.1, float("nan"), float("inf"), (0.1, -0.1), ()):
        with pytest.raises(ValueError, match="state_noise must be finite numbers >= 0"):
            TrainConfig(state_noise=bad)
    with pytest.raises(ValueError, match="state_noise has 2 stds, but the policy's state has 3 features"):
        train(_fresh_policy(), _dataset(), TrainConfig(steps=1, batch_size=4, state_noise=(0.1, 0.1)), Path("unused"),
              progress=False)


def test_state_noise_is_one_offset_per_window_in_normalised_units():
    policy = make_policy(DBPConfig(**{**SHAPE, "n_obs_steps": 2}))
    # feature ranges 2, 20 and 0.2: normalised, each spans [-1, 1]
    policy.fit_normalizers(torch.tensor([[[0.0, 0.0, 0.0]], [[2.0, 20.0, 0.2]]]).expand(2, 2, 3), torch.randn(2, 8, 2))
    state = torch.randn(20000, 1, 3).expand(20000, 2, 3) + torch.tensor([0.0, 1.0])[None, :, None]
    torch.manual_seed(0)
    offset = perturb_state(state, policy.state_normalizer, 0.1) - state
    torch.testing.assert_close(offset[:, 0], offset[:, 1])  # velocities between the steps are kept
    normalised_std = offset[:, 0].std(0) * policy.state_normalizer.scale
    torch.testing.assert_close(normalised_std, torch.full((3,), 0.1), rtol=0.03, atol=0)


def test_state_noise_per_feature_offsets_each_feature_by_its_own_std():
    policy = make_policy(DBPConfig(**SHAPE))
    policy.fit_normalizers(torch.tensor([[[0.0, 0.0, 0.0]], [[2.0, 20.0, 0.2]]]), torch.randn(2, 8, 2))
    state = torch.randn(20000, 1, 3)
    torch.manual_seed(0)
    offset = perturb_state(state, policy.state_normalizer, (0.0, 0.05, 0.2)) - state
    assert torch.equal(offset[:, 0, 0], torch.zeros(20000))  # a std of 0 leaves that feature as recorded
    normalised_std = offset[:, 0, 1:].std(0) * policy.state_normalizer.scale[1:]
    torch.testing.assert_close(normalised_std, torch.tensor([0.05, 0.2]), rtol=0.03, atol=0)


def test_state_noise_changes_what_is_trained(tmp_path):
    clean = train(_fresh_policy(), _dataset(), TrainConfig(steps=3, batch_size=4), tmp_path / "clean", progress=False)
    noisy = train(_fresh_policy(), _dataset(), TrainConfig(steps=3, batch_size=4, state_noise=0.5), tmp_path / "noisy",
                  progress=False)
    weights = zip(clean.policy.state_dict().values(), noisy.policy.state_dict().values())
    assert any(not torch.equal(a, b) for a, b in weights if a.is_floating_point())


def test_schedule_warms_up_then_decays_to_zero():
    lrs = [cosine_with_warmup(s, warmup=10, total=110) for s in range(111)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[110] == pytest.approx(0.0)


def test_ema_follows_the_weights_with_a_warming_decay():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, max_decay=0.9)
    assert ema.decay() == 0.0  # the first update copies the weights
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, model.weight)
    for _ in range(200):
        ema.update(model)
    assert ema.decay() == 0.9
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, torch.full((2, 2), 1.1))


KILLABLE_RUN = """
import sys, time, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_training import _dataset, _fresh_policy
from dbp_control.core.training import TrainConfig, train

class Slow:
    def __init__(self, inner): self.inner = inner
    def __len__(self): return len(self.inner)
    def batch(self, indices):
        time.sleep(0.05)
        return self.inner.batch(indices)

train(_fresh_policy(), Slow(_dataset()), TrainConfig(steps=60, batch_size=4, checkpoint_every=5), Path({out!r}), progress=False)
"""


def test_sigkill_mid_run_then_resume(tmp_path):
    """A real training process killed with SIGKILL keeps its last checkpoint, and resuming from it
    ends with the same weights as an uninterrupted run."""
    out = tmp_path / "run"
    script = tmp_path / "run.py"
    script.write_text(KILLABLE_RUN.format(tests=str(Path(__file__).parent), out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 120
    while not (out / CHECKPOINT_NAME).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let it get into the middle of the next save interval
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(out / CHECKPOINT_NAME)["step"]
    assert 0 < killed_at < 60

    cfg = TrainConfig(steps=60, batch_size=4, checkpoint_every=5)
    resumed = train(_fresh_policy(), _dataset(), cfg, out, progress=False)
    straight = train(_fresh_policy(), _dataset(), cfg, tmp_path / "straight", progress=False)
    assert resumed.resumed_from == killed_at
    for a, b in zip(straight.policy.state_dict().values(), resumed.policy.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
