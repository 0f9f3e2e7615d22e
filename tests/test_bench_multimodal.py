import json
import subprocess
import sys

import numpy as np
import pytest

from dbp_control.core.benchmarks.multimodal import (
    MethodResult,
    MultimodalBenchConfig,
    _compare_energy,
    format_table,
    run_multimodal_benchmark,
)
from dbp_control.core.benchmarks.obstacle import ObstacleTask, energy_distance
from dbp_control.core.training.checkpoint import read_checkpoint
from dbp_control.core.training.trainer import CHECKPOINT_NAME


@pytest.fixture
def task():
    return ObstacleTask()


def test_expert_is_bimodal_balanced_and_collision_free(task):
    rng = np.random.default_rng(0)
    obs = task.sample_observations(rng, 4000)
    chunks = task.expert(rng, obs)
    assert chunks.shape == (4000, task.horizon, 2)
    assert not task.collides(obs, chunks).any()
    left = (task.mode_of(obs, chunks) > 0).mean()
    assert 0.47 < left < 0.53
    np.testing.assert_allclose(chunks[:, -1], obs[:, 2:], atol=1e-9)  # the chunk ends at the goal


def test_the_average_of_the_modes_goes_through_the_obstacle(task):
    rng = np.random.default_rng(1)
    obs = task.sample_observations(rng, 100)
    mean_path = task.path(obs, np.zeros(len(obs)))
    assert task.collides(obs, mean_path).all()


def test_nearest_mode_distance_is_zero_on_the_mean_paths(task):
    rng = np.random.default_rng(2)
    obs = task.sample_observations(rng, 10)
    amp = (task.amplitude_low + task.amplitude_high) / 2
    for sign in (-1, 1):
        np.testing.assert_allclose(task.distance_to_nearest_mode(obs, task.path(obs, sign * amp * np.ones(10))), 0, atol=1e-12)


def test_energy_distance_separates_distributions():
    rng = np.random.default_rng(3)
    same = energy_distance(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)))
    shifted = energy_distance(rng.normal(size=(300, 4)), rng.normal(loc=1.0, size=(300, 4)))
    assert abs(same) < 0.05 and shifted > 0.5


def test_energy_comparison_uses_a_ratio_only_when_ddpm_is_clearly_above_zero():
    def row(name, ed, se):
        return MethodResult(name, 1, 1.0, 1.0, 0.5, 0.0, 0.03, ed, se)

    assert "DBP / DDPM-100: 1.10" in _compare_energy(row("DBP", 0.011, 0.001), row("DDPM-100", 0.010, 0.001))
    same = _compare_energy(row("DBP", 0.002, 0.001), row("DDPM-100", 0.001, 0.001))
    assert "ratio is undefined" in same and "indistinguishable" in same
    assert "different" in _compare_energy(row("DBP", 0.02, 0.001), row("DDPM-100", 0.001, 0.001))


def test_benchmark_smoke_run_writes_table_plot_and_results(tmp_path):
    cfg = MultimodalBenchConfig(out_dir=tmp_path, train_demos=64, steps=3, batch_size=8, down_dims=(16, 32),
                                eval_observations=3, samples_per_observation=6, latency_calls=3, progress=False)
    result = run_multimodal_benchmark(cfg)
    names = [r.name for r in result.rows]
    assert names == ["expert (held-out)", "BC", "DBP", "DDIM-10", "DDPM-100"]
    assert [r.nfe for r in result.rows[1:]] == [1, 1, 10, 100]
    assert result.row("expert (held-out)").collision_rate == 0.0
    assert result.row("DDPM-100").latency_ms_median > result.row("DBP").latency_ms_median
    table = format_table(result)
    assert "DDPM-100" in table and "energy distance" in table and "goal" in table
    assert (tmp_path / "samples.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert saved["rows"][0]["latency_ms_median"] is None and saved["rows"][2]["name"] == "DBP"
    # a second run resumes every method from its finished checkpoint instead of training again
    again = run_multimodal_benchmark(cfg)
    assert [r.name for r in again.rows] == names
    assert result.resumed_from == {"bc": 0, "dbp": 0, "diffusion": 0}
    assert again.resumed_from == {"bc": 3, "dbp": 3, "diffusion": 3}
    assert "resumed at step 3" in format_table(again)
    # DBP trained with the drift field the README's figures were measured with, not DBP's current default
    saved_dbp = read_checkpoint(tmp_path / "dbp" / CHECKPOINT_NAME)["policy_config"]
    assert (tuple(saved_dbp["temperatures"]), saved_dbp["zero_noise_weight"]) == ((0.02, 0.05, 0.2), 0.0)


def test_cli_runs_the_benchmark_and_rejects_bad_arguments(tmp_path):
    cmd = [sys.executable, "-m", "dbp_control.cli.main", "bench", "multimodal", "--out", str(tmp_path), "--steps", "2",
           "--train-demos", "32", "--batch-size", "4", "--down-dims", "16,32", "--eval-observations", "2",
           "--samples-per-observation", "4", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "DBP" in done.stdout and "samples.png" in done.stdout
    field = subprocess.run(cmd + ["--temperatures", "0.2,1", "--zero-noise-weight", "0.5", "--out", str(tmp_path / "field")],
                           capture_output=True, text=True, timeout=300)
    assert field.returncode == 0, field.stderr
    saved_dbp = read_checkpoint(tmp_path / "field" / "dbp" / CHECKPOINT_NAME)["policy_config"]
    assert (tuple(saved_dbp["temperatures"]), saved_dbp["zero_noise_weight"]) == ((0.2, 1.0), 0.5)
    bad = subprocess.run(cmd[:-1] + ["--down-dims", "16,x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "comma-separated integers" in bad.stderr
    odd = subprocess.run(cmd[:-3] + ["--down-dims", "12,24", "--quiet"], capture_output=True, text=True, timeout=120)
    assert odd.returncode == 2 and "divisible by n_groups" in odd.stderr
