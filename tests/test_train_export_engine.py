"""dbp train -> dbp export -> the ONNX Runtime engine -> closed-loop evaluation, with tiny settings."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from dbp_control.core.data.dataset import Dataset, DatasetError
from dbp_control.core.data.synthetic import synthetic_dataset as make_dataset
from dbp_control.core.evaluation.closed_loop import TorchChunkPolicy, evaluate, wilson_interval
from dbp_control.core.export.onnx_export import ExportError, export_policy, exporter_fingerprint
from dbp_control.core.inference.engine import EngineError, LiveConfig, PolicyEngine
from dbp_control.core.layout import ROBOT_JOINTS
from dbp_control.core.policies.dbp.modeling import DBPConfig
from dbp_control.core.training.checkpoint import load_policy, read_checkpoint, save_checkpoint
from dbp_control.core.training.recipe import TrainRecipe, train_on_dataset, windows_for
from dbp_control.core.training.trainer import METRICS_NAME

CAMERAS = ("left_wrist", "right_wrist", "head")


TINY = dict(down_dims=(16, 32), horizon=8, n_action_steps=4, steps=3, batch_size=4)


@pytest.fixture(scope="module")
def state_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    dataset = make_dataset(root / "ds.zarr")
    result = train_on_dataset(dataset, TrainRecipe(method="dbp", **TINY), root / "train", progress=False)
    assert result.validation_loss is not None and result.loss_plot.exists()
    return root / "train" / "checkpoint.pt"


def parity(model_dir, checkpoint, images=None):
    engine = PolicyEngine(model_dir)
    policy = load_policy(checkpoint)
    if engine.sidecar["sampler"]:  # as the export sampled
        policy.use_sampler(engine.sidecar["sampler"], engine.sidecar["nfe"])
    c = policy.config
    rng = np.random.default_rng(1)
    state = rng.normal(size=(c.n_obs_steps, c.state_dim)).astype(np.float32)
    noise = engine.noise()
    onnx_chunk = engine.predict(state, images, noise)
    tensors = {cam: torch.from_numpy(v).permute(0, 3, 1, 2)[None] for cam, v in (images or {}).items()} or None
    with torch.no_grad():
        cond = policy.encode(torch.from_numpy(state)[None], tensors)
        extra = {"step_noise": torch.from_numpy(noise["z_steps"])} if "z_steps" in noise else {}
        torch_chunk = policy.action_normalizer.unnormalize(
            policy.sample_normalized(cond, torch.from_numpy(noise["z"]), None, **extra))[0].numpy()
    return np.abs(onnx_chunk - torch_chunk).max(), engine


def test_one_seed_trains_the_same_weights_and_another_seed_others(tmp_path):
    dataset = make_dataset(tmp_path / "ds.zarr")

    def weights(seed, folder):
        train_on_dataset(dataset, TrainRecipe(method="dbp", seed=seed, **TINY), tmp_path / folder, progress=False)
        return load_policy(tmp_path / folder / "checkpoint.pt").state_dict()

    first, again, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert all(torch.equal(first[k], again[k]) for k in first)  # the initial weights are seeded too
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_checkpoint_carries_the_robot_layout_and_resumes(state_checkpoint, tmp_path):
    data = read_checkpoint(state_checkpoint)
    assert data["metadata"]["state_keys"] == ["joints", "objects"]
    assert data["metadata"]["dataset"]["layout"]["joints"] == list(ROBOT_JOINTS) and data["metadata"]["dataset"]["rate_hz"] == 10.0
    assert data["policy_config"]["state_dim"] == 28 and data["step"] == 3


def test_a_finished_run_run_again_logs_its_validation_once(state_checkpoint, tmp_path):
    shutil.copytree(state_checkpoint.parent, tmp_path / "train")
    again = train_on_dataset(state_checkpoint.parent.parent / "ds.zarr", TrainRecipe(method="dbp", **TINY),
                             tmp_path / "train", progress=False)
    assert again.train.steps_done == 3 and again.train.resumed_from == 3
    records = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [3]


def test_state_policy_export_matches_torch_and_checks_the_robot(state_checkpoint, tmp_path):
    export_policy(state_checkpoint, tmp_path / "m")
    diff, engine = parity(tmp_path / "m", state_checkpoint)
    assert diff < 1e-4
    sidecar = yaml.safe_load((tmp_path / "m" / "policy.yaml").read_text())
    assert sidecar["action"]["names"] == list(ROBOT_JOINTS) and sidecar["step_hz"] == 10.0 and sidecar["nfe"] == 1
    assert sidecar["graphs"]["head"]["inputs"]["z"]["shape"] == [1, 8, 14]
    assert engine.providers[-1] == "CPUExecutionProvider"
    bound = PolicyEngine(tmp_path / "m", io_binding=True)  # the GPU path's binding, exercised on the CPU
    noise, state = bound.noise(), np.ones((2, 28), np.float32)
    np.testing.assert_allclose(bound.act(state, noise=noise), engine.act(state, noise=noise), atol=1e-6)
    with pytest.raises(ExportError, match="already holds an exported policy"):
        export_policy(state_checkpoint, tmp_path / "m")
    with pytest.raises(EngineError, match="joints .* differ"):
        PolicyEngine(tmp_path / "m", live=LiveConfig(cameras={}, joint_names=ROBOT_JOINTS[::-1], state_keys=("joints", "objects")))
    with pytest.raises(EngineError, match="state keys"):
        PolicyEngine(tmp_path / "m", live=LiveConfig(cameras={}, joint_names=ROBOT_JOINTS))


def test_bench_trains_each_recipe_variant_in_its_own_folder(tmp_path):
    from dbp_control.core.benchmarks.policy import (FOLDER_NAME_REFERENCE, PolicyBenchConfig, bench_recipe, task_root,
                                                    training_folder)

    reference_drift = {name: FOLDER_NAME_REFERENCE[name] for name in ("temperatures", "zero_noise_weight")}

    def folder(method, seed=0, **options):
        # DBP at the folder names' reference drift field unless the options set it
        cfg = PolicyBenchConfig(out_dir=tmp_path, **{**reference_drift, **options})
        return training_folder(tmp_path, bench_recipe(cfg, method, seed, "lift"), cfg.batch_size)

    assert folder("dbp") == tmp_path / "dbp"  # where runs before the options trained
    # today's defaults are named against the frozen reference, so a folder of the earlier defaults keeps its name
    defaults = PolicyBenchConfig(out_dir=tmp_path)
    assert training_folder(tmp_path, bench_recipe(defaults, "dbp", 0, "lift"), defaults.batch_size) \
        == tmp_path / "dbp_tau0.2-0.5-1_zero1"
    assert folder("diffusion", state_noise=0.1) == tmp_path / "diffusion_state_noise0.1"
    assert len({folder("dbp", state_noise=noise) for noise in (0.0, 0.05, 0.1)}) == 3
    assert folder("diffusion", object_noise=0.1) == tmp_path / "diffusion_object_noise0.1"
    assert folder("dbp", state_noise=0.05, object_noise=0.1) == tmp_path / "dbp_state_noise0.05_object_noise0.1"
    assert bench_recipe(PolicyBenchConfig(object_noise=0.1), "dbp", 0, "lift").object_noise == 0.1
    # a task's own offsets, for both methods; the other tasks keep the common ones
    per_task = PolicyBenchConfig(tasks=("handover", "transport"), state_noise=0.05, object_noise=0.1,
                                 task_state_noise={"transport": 0.0})
    assert [(r.state_noise, r.object_noise) for r in (bench_recipe(per_task, m, 0, t) for t in per_task.tasks
                                                       for m in ("dbp", "diffusion"))] == [(0.05, 0.1)] * 2 + [(0.0, 0.1)] * 2
    with pytest.raises(ValueError, match=r"task_object_noise names task\(s\) \['lift'\] that this run does not bench"):
        PolicyBenchConfig(tasks=("handover",), task_object_noise={"lift": 0.1})
    with pytest.raises(ValueError, match="state_noise must be a finite number >= 0, got -1"):
        PolicyBenchConfig(tasks=("handover",), task_state_noise={"handover": -1.0})
    sets = {"dbp_batch_size": 16, "num_generated": 16, "neighbour_positives": 15, "temperatures": (0.02, 0.05, 0.2, 1.0)}
    assert folder("dbp", state_noise=0.1, **sets) == tmp_path / "dbp_state_noise0.1_batch16_gen16_neighbours15_tau0.02-0.05-0.2-1"
    # DBP's settings are its own: the diffusion baseline keeps the common batch and its folder
    assert folder("diffusion", state_noise=0.1, **sets) == tmp_path / "diffusion_state_noise0.1"
    assert bench_recipe(PolicyBenchConfig(**sets), "diffusion", 0, "lift").batch_size == PolicyBenchConfig().batch_size
    assert folder("dbp", dbp_batch_size=PolicyBenchConfig().batch_size) == tmp_path / "dbp"  # the common batch
    for options in ({"num_generated": 8}, {"neighbour_positives": 1}, {"temperatures": (0.1,)}):
        assert folder("dbp", **options) != tmp_path / "dbp", options
    assert folder("dbp", object_noise=0.1, noise_skip=0.2) == tmp_path / "dbp_object_noise0.1_skip0.2"
    assert folder("diffusion", noise_skip=0.2) == tmp_path / "diffusion"
    assert folder("dbp", noise_skip=0.2, noise_skip_fade_steps=1500) == tmp_path / "dbp_skip0.2_fade1500"
    assert folder("dbp", temperatures=(0.2, 0.5, 1.0), zero_noise_weight=1.0) == tmp_path / "dbp_tau0.2-0.5-1_zero1"
    assert folder("diffusion", zero_noise_weight=1.0) == tmp_path / "diffusion"
    # a learning rate is both methods' unless DBP is given its own
    assert folder("diffusion", state_noise=0.1, lr=3e-3) == tmp_path / "diffusion_state_noise0.1_lr0.003"
    assert folder("dbp", state_noise=0.1, lr=3e-3) == tmp_path / "dbp_state_noise0.1_lr0.003"
    assert folder("diffusion", dbp_lr=3e-3) == tmp_path / "diffusion"
    assert bench_recipe(PolicyBenchConfig(lr=2e-3, dbp_lr=3e-3), "dbp", 0, "lift").lr == 3e-3
    # a training seed other than 0 trains beside seed 0's folder, where single-seed runs trained
    assert bench_recipe(PolicyBenchConfig(), "diffusion", 2, "lift").seed == 2
    assert folder("dbp", 1, state_noise=0.1, dbp_lr=3e-3) == tmp_path / "dbp_state_noise0.1_lr0.003_seed1"
    assert folder("diffusion", 2) == tmp_path / "diffusion_seed2"
    assert folder("dbp", lr=PolicyBenchConfig().lr) == tmp_path / "dbp"
    # another budget trains beside the default one's (a checkpoint of 3000 steps refuses to resume at 6000)
    assert folder("diffusion", steps=6000, state_noise=0.05) == tmp_path / "diffusion_steps6000_state_noise0.05"
    assert folder("dbp", steps=PolicyBenchConfig().steps) == tmp_path / "dbp"
    # demonstrations recorded with execution noise: a folder of their own for everything made from them
    assert task_root(PolicyBenchConfig(out_dir=tmp_path), "lift") == tmp_path / "lift"
    assert task_root(PolicyBenchConfig(out_dir=tmp_path, demo_execution_noise=0.01), "lift") == \
        tmp_path / "lift" / "execution_noise0.01"
    with pytest.raises(ValueError, match="execution noise std must be a finite number of radians >= 0, got -0.01"):
        PolicyBenchConfig(demo_execution_noise=-0.01)
    with pytest.raises(ValueError, match="lr"):
        PolicyBenchConfig(dbp_lr=0.0)
    with pytest.raises(ValueError, match="num_generated"):
        PolicyBenchConfig(num_generated=1)
    with pytest.raises(ValueError, match="temperatures"):
        PolicyBenchConfig(temperatures=(0.1, 0.0))
    with pytest.raises(ValueError, match="noise_scale must be a finite number >= 0"):
        PolicyBenchConfig(noise_scales=(1.0, -0.5))
    for scales in ((), (0.0, 0.0)):
        with pytest.raises(ValueError, match="noise_scales must be one or more different scales"):
            PolicyBenchConfig(noise_scales=scales)
    for seeds in ((), (1, 1), (-1,), (0.5,), (True,)):
        with pytest.raises(ValueError, match="seeds must be one or more different integers >= 0"):
            PolicyBenchConfig(seeds=seeds)


def test_bench_table_judges_each_goal_and_the_plot_is_written(tmp_path):
    from dbp_control.core.benchmarks.policy import (PolicyBenchResult, VariantResult, format_policy_table,
                                                    plot_policy_benchmark)

    def variant(task, label, successes, ms, scale=1.0):
        nfe = {"DBP": 1, "DDIM-10": 10, "DDPM-100": 100}[label]
        return VariantResult(task, label, nfe, successes, 50, [ms] * 10, scale)

    result = PolicyBenchResult(
        [variant("lift", "DBP", 50, 3.0), variant("lift", "DDIM-10", 41, 30.0), variant("lift", "DDPM-100", 47, 360.0),
         variant("lift", "DBP", 49, 3.0, 0.0), variant("lift", "DDIM-10", 41, 30.0, 0.0),
         variant("lift", "DDPM-100", 47, 360.0, 0.0),
         variant("handover", "DBP", 6, 3.0), variant("handover", "DDIM-10", 6, 30.0),
         variant("handover", "DDPM-100", 16, 150.0), variant("handover", "DBP", 32, 3.0, 0.0),
         variant("handover", "DDIM-10", 30, 30.0, 0.0), variant("handover", "DDPM-100", 27, 150.0, 0.0)],
        head_ms=[1.5] * 90 + [2.5] * 10, head_int8_ms=[1.2] * 100, head_threaded_ms=[1.0] * 98 + [1.9] * 2,
        encoder_ms=[6.0], encoder_int8_ms=[3.0], providers=["CPUExecutionProvider"], train_seconds={},
        state_offsets={"lift": (0.0, None), "handover": (0.05, 0.1)}, demo_execution_noise=0.01, threads=2)
    table = format_policy_table(result)
    assert ("handover: demonstrations recorded with execution noise std 0.01 rad (the arms' executed targets offset, "
            "the clean targets recorded)") in table
    assert "lift: both methods trained on states offset by std 0\n" in table
    assert "handover: both methods trained on states offset by std 0.05 (object poses: 0.1)" in table
    # each noise scale judged on its own: DBP against DDPM-100 sampled with the same scale
    assert "lift, noise scale 1: DBP success 50/50 vs DDPM-100 47/50 (goal: at least as successful: met)" in table
    assert "lift, noise scale 0: DBP success 49/50 vs DDPM-100 47/50 (goal: at least as successful: met)" in table
    assert "handover, noise scale 1: DBP success 6/50 vs DDPM-100 16/50 (goal: at least as successful: NOT met)" \
        in table
    assert "handover, noise scale 0: DBP success 32/50 vs DDPM-100 27/50 (goal: at least as successful: met)" in table
    assert "lift: latency ratio DDPM-100 / DBP 120 (goal >= 80: met)" in table
    assert "handover: latency ratio DDPM-100 / DBP 50 (goal >= 80: NOT met)" in table
    assert re.search(r"^handover +DDPM-100 +100 +0 +27/50 .* 50\.0  0:27$", table, re.MULTILINE), table
    assert "head-only p99 2.50 ms (goal < 2 ms: NOT met)" in table  # median 1.5 ms, but one call in ten takes 2.5
    assert "INT8 head-only p99 1.20 ms (goal < 2 ms: met)" in table
    assert "head-only on 2 threads p99 1.90 ms (goal < 2 ms: met)" in table
    assert "on 2 spinning threads, as the issue's calibration: p50 1.00 ms, p99 1.90 ms" in table
    assert ("this machine against the issue's calibration on 2 threads: head p50 1.00 ms vs about 1.1 ms (0.9x), "
            "encoder p50 6.00 ms vs about 3.1 ms (1.9x, ours with its FiLM terms)") in table
    plot_policy_benchmark(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_table_sums_success_over_training_seeds(tmp_path):
    from dbp_control.core.benchmarks.policy import (PolicyBenchResult, VariantResult, format_policy_table,
                                                    plot_policy_benchmark)

    nfe = {"DBP": 1, "DDIM-10": 10, "DDPM-100": 100}
    # seed 0 alone: DBP trails DDPM-100 (8 vs 16); with seed 1 (22 vs 9) it leads over both (30 vs 25)
    counts = {0: {"DBP": 8, "DDIM-10": 5, "DDPM-100": 16}, 1: {"DBP": 22, "DDIM-10": 11, "DDPM-100": 9}}
    latency = {"DBP": [2.0] * 10, "DDIM-10": [20.0] * 10, "DDPM-100": [200.0] * 10}
    variants = [VariantResult("transport", label, nfe[label], counts[seed][label], 50, latency[label], 1.0, seed)
                for seed in (0, 1) for label in nfe]
    table = format_policy_table(PolicyBenchResult(variants, [1.0], [1.0], [1.0], [3.0], [2.0], ["CPUExecutionProvider"], {}))
    assert ("transport, noise scale 1: DBP success 30/100 vs DDPM-100 25/100 over training seeds 0, 1 "
            "(goal: at least as successful: met)") in table
    assert re.search(r"^transport +DBP +1 +1 +30/100 .* 1\.0  0:8 1:22$", table, re.MULTILINE), table
    assert re.search(r"^transport +DDPM-100 +100 +1 +25/100 .* 100\.0  0:16 1:9$", table, re.MULTILINE), table
    assert "transport: latency ratio DDPM-100 / DBP 100 (goal >= 80: met)" in table
    first_seed_only = format_policy_table(PolicyBenchResult(variants[:3], [1.0], [1.0], [1.0], [3.0], [2.0], [], {}, threads=1))
    assert "execution noise" not in first_seed_only  # demonstrations recorded as the expert acts
    assert "calibration on" not in first_seed_only  # one thread: not comparable with the 2-thread figures
    assert ("transport, noise scale 1: DBP success 8/50 vs DDPM-100 16/50 (goal: at least as successful: NOT met)"
            in first_seed_only)
    plot_policy_benchmark(PolicyBenchResult(variants, [1.0], [1.0], [1.0], [3.0], [2.0], [], {}), tmp_path / "seeds.png")
    assert (tmp_path / "seeds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_times_the_graphs_in_turns_so_a_slow_spell_falls_on_each_alike(monkeypatch, tmp_path):
    import dbp_control.core.benchmarks.policy as bench

    calls: list[str] = []

    class CountingEngine:  # stands in for PolicyEngine: the order of the calls is what is checked
        n_obs_steps, state_dim = 2, 3

        def __init__(self, model, threads):
            self.name, self.sidecar = model.name, {"nfe": {"dbp": 1, "ddim-10": 10, "ddpm-100": 100}[model.name]}

        def noise(self):
            return {}

        def act(self, state, noise):
            calls.append(self.name)

    monkeypatch.setattr(bench, "PolicyEngine", CountingEngine)
    cfg = bench.PolicyBenchConfig(latency_calls=200, progress=False)
    times = bench._chunk_latencies(cfg, {label: tmp_path / label.lower() for label in ("DBP", "DDIM-10", "DDPM-100")})
    assert {label: len(ms) for label, ms in times.items()} == {"DBP": 200, "DDIM-10": 200, "DDPM-100": 20}
    turns = [name for i, name in enumerate(calls) if i == 0 or calls[i - 1] != name]
    assert turns == ["dbp", "ddim-10", "ddpm-100"] * bench.CHUNK_TIMING_ROUNDS
    # each block of 20 (DDPM-100: 2) timed calls follows one warm-up call
    assert (calls.count("dbp"), calls.count("ddpm-100")) == (210, 30)


def test_bench_runs_end_to_end_and_its_evaluation_does_not_depend_on_the_timing(tmp_path):
    from dbp_control.core.benchmarks.policy import PolicyBenchConfig, run_policy_benchmark

    def run(calls, noise_scales, seeds=(0,), reuse=True):
        cfg = PolicyBenchConfig(out_dir=tmp_path, demos=2, steps=2, batch_size=4, eval_episodes=2, latency_calls=calls,
                                noise_scales=noise_scales, seeds=seeds, reuse_evaluations=reuse, progress=False)
        return run_policy_benchmark(cfg)

    # the second run reuses demonstrations, dataset, checkpoints and exports, and evaluates afresh
    first, second = run(20, (1.0, 0.0)), run(40, (1.0,), reuse=False)
    assert [(v.label, v.nfe, v.noise_scale, len(v.latency_ms)) for v in first.variants] == [
        ("DBP", 1, 1.0, 20), ("DBP", 1, 0.0, 20), ("DDIM-10", 10, 1.0, 20), ("DDIM-10", 10, 0.0, 20),
        ("DDPM-100", 100, 1.0, 10), ("DDPM-100", 100, 0.0, 10)]
    assert first.variants[0].latency_ms is first.variants[1].latency_ms  # timed once per graph
    assert len(first.head_ms) == len(first.head_int8_ms) == len(first.head_threaded_ms) == 20 and len(second.encoder_int8_ms) == 40
    # neither the timing nor another scale's evaluation changes what scale 1 scores
    assert [(v.successes, v.episodes) for v in first.variants if v.noise_scale == 1.0] == \
        [(v.successes, v.episodes) for v in second.variants]
    assert first.variants[0].episodes == 2 and (tmp_path / "bench_policy.png").exists()
    assert first.state_offsets == {"lift": (0.0, None)}  # the table's line of what both methods trained on
    # each evaluation was logged as it finished, both runs' in order, so an interrupted run keeps its scores
    logged = [json.loads(line) for line in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    assert [(r["label"], r["noise_scale"], r["successes"], r["episodes"], r["seeds"]) for r in logged] == [
        (v.label, v.noise_scale, v.successes, v.episodes, [100_000, 100_001]) for v in first.variants + second.variants]
    assert logged[0]["checkpoint_sha256"] == logged[6]["checkpoint_sha256"] != logged[2]["checkpoint_sha256"]
    assert {r["executed_from_step"] for r in logged} == {1}  # n_obs_steps - 1: the newest observation's step

    # by default a run reuses the latest logged evaluation of the same graphs by the same code, and logs nothing
    reused = run(20, (1.0, 0.0))
    assert [(v.label, v.noise_scale, v.successes, v.episodes) for v in reused.variants] == \
        [(v.label, v.noise_scale, v.successes, v.episodes) for v in first.variants]
    latest = {(v.label, v.noise_scale): v.evaluated_at for v in first.variants + second.variants}
    assert [v.evaluated_at for v in reused.variants] == [latest[v.label, v.noise_scale] for v in reused.variants]
    assert len((tmp_path / "evaluations.jsonl").read_text().splitlines()) == 9
    assert len(reused.variants[0].latency_ms) == 20  # the latency is measured anew

    # a second training seed trains and exports beside the first, whose runs are reused as they were
    both = run(20, (1.0,), seeds=(0, 1))
    assert [(v.label, v.training_seed) for v in both.variants] == [
        ("DBP", 0), ("DDIM-10", 0), ("DDPM-100", 0), ("DBP", 1), ("DDIM-10", 1), ("DDPM-100", 1)]
    assert [(v.successes, v.episodes) for v in both.variants[:3]] == [(v.successes, v.episodes) for v in second.variants]
    assert both.variants[0].latency_ms is both.variants[3].latency_ms  # one graph, timed once for both seeds
    assert {"dbp_steps2_tau0.2-0.5-1_zero1_seed1", "diffusion_steps2_seed1"} <= {p.name for p in tmp_path.joinpath("lift").iterdir()}
    assert {p.name for p in tmp_path.joinpath("lift", "onnx").iterdir()} == {
        "dbp", "ddim-10", "ddpm-100", "dbp_seed1", "ddim-10_seed1", "ddpm-100_seed1"}
    logged = [json.loads(line) for line in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    assert len(logged) == 12  # seed 0's reused, seed 1's evaluated
    assert [(r["training_seed"], r["recipe"]["seed"]) for r in logged[-3:]] == [(1, 1)] * 3
    assert logged[-3]["checkpoint_sha256"] != logged[6]["checkpoint_sha256"]
    assert json.loads((tmp_path / "results.json").read_text())["config"]["seeds"] == [0, 1]

    # an evaluation logged by other code is not reused; a damaged log stops the run, naming its line
    log = tmp_path / "evaluations.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for record in records:
        record["reuse_key"]["evaluator"] = "older-evaluator"
    log.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert len(run(20, (1.0,)).variants) == 3 and len(log.read_text().splitlines()) == 15
    log.write_text(log.read_text() + '{"task": "lift", "lab')
    with pytest.raises(ValueError, match=r"evaluations.jsonl:16 is not an evaluation record"):
        run(20, (1.0,))


def test_bench_reuses_an_export_only_when_this_exporter_wrote_it(state_checkpoint, tmp_path):
    from dbp_control.core.benchmarks.policy import _export_if_stale

    _export_if_stale(state_checkpoint, tmp_path / "m", None, None)
    sidecar_path = tmp_path / "m" / "policy.yaml"
    assert yaml.safe_load(sidecar_path.read_text())["source"]["exporter"] == exporter_fingerprint()
    written = sidecar_path.stat().st_mtime_ns
    _export_if_stale(state_checkpoint, tmp_path / "m", None, None)
    assert sidecar_path.stat().st_mtime_ns == written
    sidecar_path.write_text(sidecar_path.read_text().replace(exporter_fingerprint(), "older-exporter"))
    _export_if_stale(state_checkpoint, tmp_path / "m", None, None)
    assert yaml.safe_load(sidecar_path.read_text())["source"]["exporter"] == exporter_fingerprint()


def test_corrupt_truncated_or_missing_graphs_are_refused_before_running(state_checkpoint, tmp_path):
    export_policy(state_checkpoint, tmp_path / "m")
    head = tmp_path / "m" / "head.onnx"
    data = head.read_bytes()
    head.write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineError, match="does not match its recorded sha256"):
        PolicyEngine(tmp_path / "m")
    head.unlink()
    with pytest.raises(EngineError, match="is missing"):
        PolicyEngine(tmp_path / "m")
    with pytest.raises(EngineError, match="policy.yaml is missing"):
        PolicyEngine(tmp_path)


def test_image_policy_split_graphs_match_torch_and_the_cameras(tmp_path):
    dataset = make_dataset(tmp_path / "img.zarr", cameras=CAMERAS, objects=False)
    train_on_dataset(dataset, TrainRecipe(method="dbp", obs="image", **TINY), tmp_path / "train", progress=False)
    export_policy(tmp_path / "train" / "checkpoint.pt", tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").glob("*.onnx")) == [
        "encoder_head.onnx", "encoder_left_wrist.onnx", "encoder_right_wrist.onnx", "head.onnx", "policy.onnx"]
    images = {cam: np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for cam in CAMERAS}
    diff, engine = parity(tmp_path / "m", tmp_path / "train" / "checkpoint.pt", images)
    assert diff < 1e-4
    with pytest.raises(EngineError, match="camera 'head' delivers \\(96, 96\\), the policy expects \\(32, 32\\)"):
        PolicyEngine(tmp_path / "m", live=LiveConfig(cameras={"left_wrist": (32, 32), "right_wrist": (32, 32),
                                                                "head": (96, 96)}, joint_names=ROBOT_JOINTS))
    with pytest.raises(EngineError, match="expected uint8"):
        engine.encode("head", np.zeros((32, 32, 3), np.float32))
    state = np.zeros((engine.n_obs_steps, engine.state_dim), np.float32)
    features = {cam: engine.encode(cam, images[cam][0])[None].repeat(engine.n_obs_steps, 0) for cam in CAMERAS}
    with pytest.raises(EngineError, match="no features for camera 'head'"):
        engine.act(state, {cam: f for cam, f in features.items() if cam != "head"})
    with pytest.raises(EngineError, match="camera 'head': features must be"):
        engine.act(state, {**features, "head": features["head"][:, :-1]})
    assert engine.act(state, features).shape == (engine.horizon, engine.action_dim)


@pytest.mark.parametrize("method", ["dbp", "ddpm"])
def test_film_factoring_is_exact_and_keeps_image_weights_out_of_the_head(method):
    from dbp_control.core.export.onnx_export import FullGraph, PolicyGraphs
    from dbp_control.core.policies.base import make_policy
    from dbp_control.core.policies.dbp.modeling import DBPConfig
    from dbp_control.core.policies.diffusion.modeling import DiffusionConfig

    torch.manual_seed(0)
    common = dict(state_dim=14, action_dim=14, cameras=("left_wrist", "head"), image_shape=(32, 32),
                  down_dims=(16, 32), horizon=8, n_action_steps=4)
    config = DBPConfig(**common) if method == "dbp" else DiffusionConfig(**common, sampler="ddpm", num_train_timesteps=3, num_inference_steps=3)
    policy = make_policy(config).eval()
    policy.fit_normalizers(torch.randn(64, 2, 14), torch.randn(64, 8, 14))
    state, z = torch.randn(1, 2, 14), torch.randn(1, 8, 14)
    images = {cam: torch.randint(0, 256, (1, 2, 32, 32, 3), dtype=torch.uint8) for cam in config.cameras}
    graphs = PolicyGraphs(policy)
    extra = (torch.randn(2, 1, 8, 14),) if method == "ddpm" else ()
    with torch.no_grad():
        if method == "ddpm":
            reference = policy.action_normalizer.unnormalize(policy.sample_normalized(
                policy.encode(state, {c: v.permute(0, 1, 4, 2, 3) for c, v in images.items()}), z, None,
                step_noise=extra[0]))
        else:
            reference = policy.predict_chunk(state, {c: v.permute(0, 1, 4, 2, 3) for c, v in images.items()}, noise=z)
        factored = FullGraph(graphs)(state, z, *extra, *images.values())
    torch.testing.assert_close(factored, reference, atol=1e-4, rtol=1e-4)  # float sums in another order
    step_embedding = policy.config.step_embed_dim if method == "ddpm" else 0
    head_net = graphs.head.policy.net  # one FiLM layer for all blocks, reading the state (and time step) only
    assert head_net.merged_film[1].in_features == 2 * 14 + step_embedding
    assert head_net.merged_film[1].out_features == head_net.film_width
    assert not any(hasattr(block, "film") for block in head_net.film_blocks())
    assert policy.net.film_blocks()[0].film[1].in_features == 2 * (14 + 2 * 128) + step_embedding  # left as it was
    # scale and bias per channel of the blocks: down 16, 16, 32, 32; mid 32, 32; up 16, 16
    with pytest.raises(ValueError, match=r"film_offset must be \[1, 384\], got \(1, 5\)"):
        policy.net(z, policy.encode(state, {c: v.permute(0, 1, 4, 2, 3) for c, v in images.items()}),
                   None if method == "dbp" else torch.tensor([0]), film_offset=torch.zeros(1, 5))


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_a_wide_convolution_as_one_matmul_is_the_same_convolution(kernel_size):
    from torch import nn

    from dbp_control.core.export.matmul_conv import Conv1dAsMatMul, rewrite_convolutions

    torch.manual_seed(kernel_size)
    conv = nn.Conv1d(300, 64, kernel_size, padding=kernel_size // 2)
    x = torch.randn(2, 300, 8)
    with torch.no_grad():
        torch.testing.assert_close(Conv1dAsMatMul(conv)(x), conv(x), atol=1e-5, rtol=1e-5)
    kept = nn.Sequential(nn.Conv1d(300, 64, 3, stride=2, padding=1), nn.Conv1d(64, 64, 5, padding=2),
                         nn.Conv1d(300, 64, 5, padding=0))  # strided, narrow, not "same": left as they are
    assert rewrite_convolutions(kept) == 0 and all(isinstance(m, nn.Conv1d) for m in kept)


def test_mish_through_a_sigmoid_is_mish():
    from torch import nn

    from dbp_control.core.export.mish import SigmoidMish, rewrite_mish

    x = torch.cat([torch.linspace(-30, 30, 20001), torch.tensor([-1e4, -100.0, 100.0, 1e4])])
    torch.testing.assert_close(SigmoidMish()(x), nn.functional.mish(x), atol=1e-6, rtol=1e-5)
    net = nn.Sequential(nn.Linear(3, 3), nn.Mish(), nn.Sequential(nn.Mish()))
    assert rewrite_mish(net) == 2 and not any(isinstance(m, nn.Mish) for m in net.modules())


def test_group_norm_with_an_expanded_affine_is_group_norm():
    from torch import nn

    from dbp_control.core.export.groupnorm import ExpandedGroupNorm, rewrite_group_norms

    torch.manual_seed(0)
    norm = nn.GroupNorm(8, 64)
    with torch.no_grad():  # not the initial ones and zeros, which would hide a swapped weight and bias
        norm.weight.normal_()
        norm.bias.normal_()
        x = torch.randn(2, 64, 16) * 3 + 1
        torch.testing.assert_close(ExpandedGroupNorm(norm)(x), norm(x), atol=1e-5, rtol=1e-5)
    net = nn.Sequential(nn.GroupNorm(4, 8), nn.Sequential(nn.GroupNorm(2, 8)), nn.GroupNorm(2, 8, affine=False))
    assert rewrite_group_norms(net) == 2 and sum(isinstance(m, nn.GroupNorm) for m in net.modules()) == 1


def test_the_exported_head_with_rewritten_convolutions_matches_torch(tmp_path):
    import onnx
    import onnxruntime as ort

    from dbp_control.core.export.onnx_export import PolicyGraphs, export_graph
    from dbp_control.core.policies.base import make_policy
    from dbp_control.core.policies.dbp.modeling import DBPConfig

    torch.manual_seed(0)
    policy = make_policy(DBPConfig(state_dim=14, action_dim=14, down_dims=(32, 256), horizon=8, n_action_steps=4)).eval()
    policy.fit_normalizers(torch.randn(64, 2, 14), torch.randn(64, 8, 14))
    norms = [m for m in policy.modules() if isinstance(m, torch.nn.GroupNorm)]
    with torch.no_grad():  # as trained: every GroupNorm's weight and bias its own
        for norm in norms:
            norm.weight.normal_()
            norm.bias.normal_()
    graphs = PolicyGraphs(policy)
    inputs = {"state": torch.randn(1, 2, 14), "z": torch.randn(1, 8, 14)}
    with torch.no_grad():
        export_graph(graphs.head, tuple(inputs.values()), list(inputs), tmp_path / "head.onnx")
        reference = policy.predict_chunk(inputs["state"], noise=inputs["z"]).numpy()
    session = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(tmp_path / "head.onnx")).graph.node}
    assert "MatMul" in ops  # the 256-channel convolutions were rewritten
    assert "Softplus" not in ops and "Sigmoid" in ops  # Mish through a Sigmoid
    out = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    assert np.abs(out - reference).max() < 1e-4
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "head.optimized.onnx")  # as ONNX Runtime runs it
    ort.InferenceSession(str(tmp_path / "head.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "head.optimized.onnx")).graph
    assert not {"Expand", "ConstantOfShape"} & {node.op_type for node in optimized.node}  # folded at load
    # every GroupNorm's affine by constants of the activations' full shape [C, T], not [C, 1] columns
    affine = [init for init in optimized.initializer if list(init.dims) in ([32, 8], [32, 4], [256, 4])]
    assert len(affine) == 2 * len(norms) == 2 * 17


def test_an_image_policy_exported_before_the_film_split_must_be_exported_again(tmp_path):
    dataset = make_dataset(tmp_path / "img.zarr", cameras=CAMERAS, objects=False)
    train_on_dataset(dataset, TrainRecipe(method="dbp", obs="image", **TINY), tmp_path / "train", progress=False)
    sidecar_path = export_policy(tmp_path / "train" / "checkpoint.pt", tmp_path / "m")
    sidecar = yaml.safe_load(sidecar_path.read_text())
    sidecar_path.write_text(yaml.safe_dump({**sidecar, "format_version": 1}))
    with pytest.raises(EngineError, match=r"format version 1; this engine reads 2 \(re-export the checkpoint"):
        PolicyEngine(tmp_path / "m")


def test_int8_encoders_are_calibrated_on_training_frames_and_chosen_explicitly(tmp_path):
    dataset = make_dataset(tmp_path / "img.zarr", cameras=CAMERAS, objects=False)
    train_on_dataset(dataset, TrainRecipe(method="dbp", obs="image", **TINY), tmp_path / "train", progress=False)
    checkpoint = tmp_path / "train" / "checkpoint.pt"
    sidecar = yaml.safe_load(export_policy(checkpoint, tmp_path / "m", int8_encoders=True).read_text())
    images = {cam: np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for cam in CAMERAS}
    diff, exact = parity(tmp_path / "m", checkpoint, images)
    assert diff < 1e-4 and exact.encoder_precision == "float32"  # float32 stays the default, and exact
    quantized = PolicyEngine(tmp_path / "m", encoder_precision="int8")
    for cam in CAMERAS:
        int8 = sidecar["graphs"][f"encoder_{cam}_int8"]["int8"]
        # the train split holds 2 episodes x 30 steps (fewer than 64): all of them, half calibrate, half measure
        assert int8["calibration_frames"] == 30 and int8["held_out_frames"] == 30
        assert 0 < int8["output_relative_error"]["mean"] <= int8["output_relative_error"]["max"] < 0.2
        reference, features = exact.encode(cam, images[cam][0]), quantized.encode(cam, images[cam][0])
        assert 0 < np.linalg.norm(features - reference) / np.linalg.norm(reference) < 0.2
    with pytest.raises(EngineError, match=r"no graph\(s\) \['encoder_head_int8'.*export with --int8-encoders"):
        export_policy(checkpoint, tmp_path / "float_only")
        PolicyEngine(tmp_path / "float_only", encoder_precision="int8")
    with pytest.raises(EngineError, match="encoder_precision must be one of"):
        PolicyEngine(tmp_path / "m", encoder_precision="int4")


def test_an_int8_head_is_written_on_request_measured_against_the_float_head_and_chosen_explicitly(tmp_path):
    dataset = make_dataset(tmp_path / "ds.zarr")
    recipe = TrainRecipe(method="dbp", **{**TINY, "down_dims": (16, 256)})  # 256 channels: a MatMul to quantise
    train_on_dataset(dataset, recipe, tmp_path / "train", progress=False)
    checkpoint = tmp_path / "train" / "checkpoint.pt"
    sidecar = yaml.safe_load(export_policy(checkpoint, tmp_path / "m", int8_head=True).read_text())
    int8 = sidecar["graphs"]["head_int8"]["int8"]
    assert int8["quantized_matmuls"] > 0 and int8["test_inputs"] == 16
    assert 0 < int8["output_relative_error"]["mean"] <= int8["output_relative_error"]["max"] < 0.1
    diff, exact = parity(tmp_path / "m", checkpoint)
    assert diff < 1e-4 and exact.head_precision == "float32"  # the float head stays the default, and exact
    quantized = PolicyEngine(tmp_path / "m", head_precision="int8")
    state = np.random.default_rng(2).normal(size=(quantized.n_obs_steps, quantized.state_dim)).astype(np.float32)
    noise = quantized.noise()
    reference, chunk = exact.act(state, noise=noise), quantized.act(state, noise=noise)
    assert 0 < np.linalg.norm(chunk - reference) / np.linalg.norm(reference) < 0.1
    export_policy(checkpoint, tmp_path / "float_only")
    with pytest.raises(EngineError, match=r"no graph\(s\) \['head_int8'\].*export with --int8-head"):
        PolicyEngine(tmp_path / "float_only", head_precision="int8")
    with pytest.raises(EngineError, match="head_precision must be one of"):
        PolicyEngine(tmp_path / "m", head_precision="fp16")


def test_an_int8_head_is_refused_for_a_u_net_without_wide_convolutions(state_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="int8 head quantises the convolutions of 128 channels or more; this "
                                          "policy's U-Net is at most 32 channels wide"):
        export_policy(state_checkpoint, tmp_path / "m", int8_head=True)
    assert not (tmp_path / "m").exists()  # refused before anything was written


def test_an_int8_head_is_refused_for_diffusion_whose_step_runs_in_a_loop(tmp_path):
    dataset = make_dataset(tmp_path / "ds.zarr")
    recipe = TrainRecipe(method="diffusion", **{**TINY, "down_dims": (16, 256)})  # wide enough to quantise
    train_on_dataset(dataset, recipe, tmp_path / "train", progress=False)
    with pytest.raises(ExportError, match="an int8 head is for one-step policies"):
        export_policy(tmp_path / "train" / "checkpoint.pt", tmp_path / "m", sampler="ddim", inference_steps=3,
                      int8_head=True)
    assert not (tmp_path / "m").exists()
    # the quantiser itself would leave the loop's MatMuls float: it is checked, not trusted
    from dbp_control.core.export.quantize import quantize_head

    export_policy(tmp_path / "train" / "checkpoint.pt", tmp_path / "m", sampler="ddim", inference_steps=3)
    with pytest.raises(ValueError, match=r"quantiser left \d+ of the head.s \d+ MatMuls/Gemms float"):
        quantize_head(tmp_path / "m" / "head.onnx", tmp_path / "head_int8.onnx", [])
    assert not (tmp_path / "head_int8.onnx").exists()


def test_int8_encoder_export_refuses_what_it_cannot_calibrate(state_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="int8 encoders need an image policy"):
        export_policy(state_checkpoint, tmp_path / "state", int8_encoders=True)
    dataset = make_dataset(tmp_path / "img.zarr", cameras=CAMERAS, objects=False)
    train_on_dataset(dataset, TrainRecipe(method="dbp", obs="image", **TINY), tmp_path / "train", progress=False)
    checkpoint = tmp_path / "train" / "checkpoint.pt"
    with pytest.raises(ExportError, match="int8 calibration needs the training frames: no dataset at"):
        export_policy(checkpoint, tmp_path / "a", int8_encoders=True, calibration=tmp_path / "missing.zarr")
    with pytest.raises(ExportError, match="int8 calibration has no frames of camera 'head'"):
        export_policy(checkpoint, tmp_path / "b", int8_encoders=True,
                      calibration={cam: np.zeros((4, 32, 32, 3), np.uint8) for cam in CAMERAS[:2]})
    with pytest.raises(ExportError, match=r"frames of 'left_wrist' must be uint8 \[N >= 2, 32, 32, 3\]"):
        export_policy(checkpoint, tmp_path / "c", int8_encoders=True,
                      calibration={cam: np.zeros((4, 48, 48, 3), np.uint8) for cam in CAMERAS})
    assert not any((tmp_path / name).exists() for name in "abc")  # nothing written before the refusal


def test_diffusion_exports_ddim_and_ddpm_with_caller_noise(tmp_path):
    dataset = make_dataset(tmp_path / "ds.zarr")
    train_on_dataset(dataset, TrainRecipe(method="diffusion", **TINY), tmp_path / "train", progress=False)
    checkpoint = tmp_path / "train" / "checkpoint.pt"
    export_policy(checkpoint, tmp_path / "ddim", sampler="ddim", inference_steps=3)
    policy = load_policy(checkpoint)
    policy.use_sampler("ddim", 3)  # as the export did
    engine = PolicyEngine(tmp_path / "ddim")
    state = np.random.default_rng(3).normal(size=(2, 28)).astype(np.float32)
    noise = engine.noise()
    with torch.no_grad():
        expected = policy.predict_chunk(torch.from_numpy(state)[None], noise=torch.from_numpy(noise["z"]))[0].numpy()
    assert np.abs(engine.act(state, noise=noise) - expected).max() < 1e-4 and engine.sidecar["nfe"] == 3
    export_policy(checkpoint, tmp_path / "ddpm", sampler="ddpm")
    diff, engine = parity(tmp_path / "ddpm", checkpoint)
    assert diff < 1e-4 and engine.sidecar["nfe"] == 100 and engine.z_steps_shape == (99, 1, 8, 14)
    # noise scale: the same draws scaled, z and the per-step noise alike; 0 matches torch's deterministic chunk
    unit, half = PolicyEngine(tmp_path / "ddpm"), PolicyEngine(tmp_path / "ddpm", noise_scale=0.5)
    unit_draw, half_draw = unit.noise(), half.noise()
    assert unit_draw.keys() == half_draw.keys() == {"z", "z_steps"}
    for name, value in unit_draw.items():
        np.testing.assert_allclose(half_draw[name], 0.5 * value)
    deterministic = PolicyEngine(tmp_path / "ddpm", noise_scale=0.0)
    assert not any(value.any() for value in deterministic.noise().values())
    policy.use_sampler("ddpm", 100)
    with torch.no_grad():
        expected = policy.predict_chunk(torch.from_numpy(state)[None], noise_scale=0.0)[0].numpy()
    assert np.abs(deterministic.predict(state) - expected).max() < 1e-4
    with pytest.raises(EngineError, match="noise_scale must be a finite number >= 0"):
        PolicyEngine(tmp_path / "ddpm", noise_scale=-1.0)


def test_a_diffusion_image_policy_runs_its_sampler_as_one_onnx_loop(tmp_path):
    """The sampler's step is traced once, as the body of an ONNX Loop: 3 steps or 100, the same graph, and
    both the split graphs and policy.onnx (encoders and head in one) agree with torch."""
    import onnx
    import onnxruntime as ort

    dataset = make_dataset(tmp_path / "img.zarr", cameras=CAMERAS, objects=False)
    train_on_dataset(dataset, TrainRecipe(method="diffusion", obs="image", **TINY), tmp_path / "train", progress=False)
    checkpoint = tmp_path / "train" / "checkpoint.pt"
    images = {cam: np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for cam in CAMERAS}
    state = np.random.default_rng(1).normal(size=(2, 14)).astype(np.float32)
    bodies = []
    for sampler, steps in (("ddim", 3), ("ddpm", 100)):
        export_policy(checkpoint, tmp_path / sampler, sampler=sampler, inference_steps=steps)
        diff, engine = parity(tmp_path / sampler, checkpoint, images)
        assert diff < 1e-4 and engine.sidecar["nfe"] == steps
        noise = engine.noise()
        full = ort.InferenceSession(str(tmp_path / sampler / "policy.onnx"), providers=["CPUExecutionProvider"])
        (chunk,) = full.run(None, {"state": state[None], **noise, **{f"image_{cam}": frames[None]
                                                                    for cam, frames in images.items()}})
        assert np.abs(chunk[0] - engine.predict(state, images, noise)).max() < 1e-4
        for name in ("head.onnx", "policy.onnx"):
            (loop,) = [n for n in onnx.load(str(tmp_path / sampler / name)).graph.node if n.op_type == "Loop"]
            bodies.append(len(loop.attribute[0].g.node))
    assert len(set(bodies)) == 1, bodies


def test_samplers_are_for_diffusion_only(state_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="only diffusion has samplers"):
        export_policy(state_checkpoint, tmp_path / "x", sampler="ddim")


def test_the_drift_field_settings_reach_the_dbp_config_and_are_dbp_only(tmp_path):
    dataset = make_dataset(tmp_path / "d.zarr")
    recipe = TrainRecipe(method="dbp", num_generated=6, temperatures=(0.1, 0.3), noise_skip=0.5, zero_noise_weight=0.5,
                         **TINY)
    config = train_on_dataset(dataset, recipe, tmp_path / "t", progress=False).train.policy.config
    assert (config.num_generated, config.temperatures, config.noise_skip, config.zero_noise_weight) == (6, (0.1, 0.3), 0.5, 0.5)
    logged = [json.loads(line) for line in (tmp_path / "t" / METRICS_NAME).read_text().splitlines()]
    assert all(row["zero_noise_loss"] > 0 for row in logged if "loss" in row)  # the z = 0 term, every step
    assert read_checkpoint(tmp_path / "t" / "checkpoint.pt")["metadata"]["recipe"]["num_generated"] == 6
    # the noise skip is part of the exported graph: ONNX Runtime's chunk is the torch policy's
    export_policy(tmp_path / "t" / "checkpoint.pt", tmp_path / "m")
    diff, _ = parity(tmp_path / "m", tmp_path / "t" / "checkpoint.pt")
    assert diff < 1e-4
    for option in ({"num_generated": 8}, {"noise_skip": 0.5}, {"noise_skip_fade_steps": 2}, {"zero_noise_weight": 0.5},
                   {"temperatures": (0.1,)}):
        with pytest.raises(ValueError, match="num_generated, temperatures, neighbour_positives, noise_skip, "
                                             "noise_skip_fade_steps and zero_noise_weight are DBP's; method "
                                             "'diffusion' has none"):
            TrainRecipe(method="diffusion", **option)


def test_a_faded_noise_skip_is_logged_each_step_and_gone_from_the_trained_and_exported_generator(tmp_path):
    dataset = make_dataset(tmp_path / "d.zarr")
    recipe = TrainRecipe(method="dbp", noise_skip=0.5, noise_skip_fade_steps=2, **TINY)  # 3 steps, a log line each
    policy = train_on_dataset(dataset, recipe, tmp_path / "t", progress=False).train.policy
    logged = [json.loads(line) for line in (tmp_path / "t" / METRICS_NAME).read_text().splitlines()]
    assert [row["noise_skip"] for row in logged if "loss" in row] == pytest.approx([0.5, 0.25, 0.0])
    assert policy.skip == 0.0 and read_checkpoint(tmp_path / "t" / "checkpoint.pt")["policy_config"]["noise_skip"] == 0.5
    export_policy(tmp_path / "t" / "checkpoint.pt", tmp_path / "m")  # the graph holds no skip: it matches torch's
    diff, _ = parity(tmp_path / "m", tmp_path / "t" / "checkpoint.pt")
    assert diff < 1e-4
    # a checkpoint of a run stopped at step 1 holds the skip of step 1 (0.5 * (1 - 1/2)), in torch and in its export
    stopped = read_checkpoint(tmp_path / "t" / "checkpoint.pt") | {"step": 1}
    save_checkpoint(tmp_path / "stopped" / "checkpoint.pt", stopped)
    assert load_policy(tmp_path / "stopped" / "checkpoint.pt").skip == pytest.approx(0.25)
    export_policy(tmp_path / "stopped" / "checkpoint.pt", tmp_path / "m_stopped")
    diff, _ = parity(tmp_path / "m_stopped", tmp_path / "stopped" / "checkpoint.pt")
    assert diff < 1e-4
    with pytest.raises(ValueError, match=r"noise_skip_fade_steps \(4\) must end within the training's 3 steps"):
        TrainRecipe(method="dbp", noise_skip=0.5, noise_skip_fade_steps=4, **TINY)
    with pytest.raises(ValueError, match="noise_skip_fade_steps fades the noise skip out, but noise_skip is 0"):
        TrainRecipe(method="dbp", noise_skip_fade_steps=2, **TINY)


@pytest.mark.parametrize("bad, message", [
    ({"num_generated": 1}, "num_generated must be >= 2"),
    ({"temperatures": (0.1, 0.0)}, "temperatures must be positive numbers"),
    ({"neighbour_positives": -1}, "neighbour_positives must be >= 0"),
    ({"noise_skip": float("nan")}, "noise_skip must be a finite number >= 0"),
    ({"noise_skip": 0.2, "noise_skip_fade_steps": 1.5}, "noise_skip_fade_steps must be an integer >= 0"),
    ({"noise_skip_fade_steps": 2}, "noise_skip_fade_steps fades the noise skip out, but noise_skip is 0"),
    ({"zero_noise_weight": -1.0}, "zero_noise_weight must be a finite number >= 0"),
])
def test_a_recipe_refuses_the_bad_drift_settings_its_dbp_config_would(bad, message):
    with pytest.raises(ValueError, match=message):
        DBPConfig(state_dim=4, action_dim=2, **bad)
    with pytest.raises(ValueError, match=message):  # before any dataset is read or demonstration recorded
        TrainRecipe(method="dbp", **bad)


def test_object_noise_offsets_the_object_poses_by_their_own_std(tmp_path):
    dataset = make_dataset(tmp_path / "d.zarr")  # 14 joint columns, then 14 of object poses
    recipe = TrainRecipe(method="diffusion", state_noise=0.0, object_noise=0.1, **TINY)
    train_on_dataset(dataset, recipe, tmp_path / "t", progress=False)
    saved = read_checkpoint(tmp_path / "t" / "checkpoint.pt")
    assert tuple(saved["train_config"]["state_noise"]) == (0.0,) * 14 + (0.1,) * 14
    assert saved["metadata"]["recipe"]["object_noise"] == 0.1
    # without object_noise, state_noise covers every feature, as checkpoints made before it recorded
    train_on_dataset(dataset, TrainRecipe(method="diffusion", state_noise=0.05, **TINY), tmp_path / "u", progress=False)
    assert read_checkpoint(tmp_path / "u" / "checkpoint.pt")["train_config"]["state_noise"] == 0.05
    with pytest.raises(DatasetError, match="has no object poses for object_noise to offset"):
        train_on_dataset(make_dataset(tmp_path / "e.zarr", objects=False), recipe, tmp_path / "v", progress=False)
    assert not (tmp_path / "v").exists()
    with pytest.raises(ValueError, match="object_noise offsets object poses, which only state observations carry"):
        TrainRecipe(obs="image", object_noise=0.1)
    with pytest.raises(ValueError, match="object_noise must be a finite number >= 0, got -0.1"):
        TrainRecipe(object_noise=-0.1)


def test_neighbour_positives_come_from_the_nearest_windows_of_other_episodes(tmp_path):
    dataset = Dataset(make_dataset(tmp_path / "d.zarr", episodes=4, val_fraction=0.25))
    recipe = TrainRecipe(method="dbp", neighbour_positives=2, **TINY)
    windows = windows_for(dataset, recipe, "train", neighbours=True)
    assert windows_for(dataset, recipe, "train").neighbours is None  # only when asked (validation: own demos)
    obs = windows.state[windows.index[:, : windows.n_obs_steps]].flatten(1)
    obs = (obs - obs.mean(0)) / obs.std(0).clamp_min(1e-6)
    for i in (0, 17, len(windows) - 1):  # brute force: the nearest windows whose episode differs
        other = windows.episode_of != windows.episode_of[i]
        dist = torch.where(other, (obs - obs[i]).pow(2).sum(1), torch.tensor(float("inf")))
        assert set(windows.neighbours[i].tolist()) == set(dist.topk(2, largest=False).indices.tolist())
    batch = windows.batch(torch.tensor([0, 17]))
    assert batch["neighbour_action"].shape == (2, 2, 8, 14)
    torch.testing.assert_close(batch["neighbour_action"][1, 0], windows.action[windows.index[windows.neighbours[17, 0]]])
    config = train_on_dataset(dataset.path, recipe, tmp_path / "t", progress=False).train.policy.config
    assert config.neighbour_positives == 2
    with pytest.raises(DatasetError, match="1000 neighbours asked, but a window has only"):
        windows_for(dataset, TrainRecipe(method="dbp", neighbour_positives=1000, **TINY), "train", neighbours=True)
    with pytest.raises(ValueError, match="neighbour_action must be \\[B, K, 8, 14\\]"):
        load_policy(tmp_path / "t" / "checkpoint.pt").compute_loss({**batch, "neighbour_action": batch["action"]})


def test_datasets_that_cannot_train_are_refused_before_anything_moves(tmp_path):
    no_val = make_dataset(tmp_path / "a.zarr", val_fraction=0.0)
    with pytest.raises(DatasetError, match="no cameras"):
        train_on_dataset(no_val, TrainRecipe(obs="image", **TINY), tmp_path / "t1", progress=False)
    import zarr

    root = zarr.open_group(no_val, mode="r+")
    del root.attrs["split"]
    with pytest.raises(DatasetError, match="no 'split' attribute"):
        train_on_dataset(no_val, TrainRecipe(**TINY), tmp_path / "t2", progress=False)
    assert not (tmp_path / "t1").exists() and not (tmp_path / "t2").exists()
    with pytest.raises(DatasetError, match="no dataset at"):
        train_on_dataset(tmp_path / "missing.zarr", TrainRecipe(**TINY), tmp_path / "t3", progress=False)


def test_closed_loop_evaluation_runs_the_receding_horizon(state_checkpoint):
    metadata = read_checkpoint(state_checkpoint)["metadata"]
    policy = TorchChunkPolicy(load_policy(state_checkpoint), tuple(metadata["state_keys"]))
    calls = []
    original = policy.predict

    def hold_still(state, images=None):  # the policy runs, but the arms hold: the cube is never lifted
        calls.append(1)
        return np.repeat(state[-1:, :14], len(original(state, images)), axis=0)

    policy.predict = hold_still
    result = evaluate(policy, "lift", range(5, 6), step_hz=10.0, strip_episodes=1)
    episode = result.episodes[0]
    assert not episode.success  # so the episode runs to its time limit
    assert episode.seconds == pytest.approx(8.0) and episode.chunks == len(calls) == 20  # 80 steps / 4 per chunk
    assert len(episode.frames) == 8
    assert wilson_interval(0, 1)[0] == 0.0 and wilson_interval(50, 50)[0] > 0.92


def test_closed_loop_executes_each_chunk_from_the_newest_observations_step():
    from dbp_control.core.evaluation.closed_loop import COMMAND_HZ, rollout
    from dbp_control.core.sim.robot import DualArmSim

    class StepNumbers:  # chunk step j commands every joint to 0.1 j: the executed targets tell which steps ran
        n_obs_steps, n_action_steps, cameras, state_keys = 2, 3, (), ("joints", "objects")

        def image_size(self, camera):
            raise AssertionError("no cameras")

        def predict(self, state, images=None):
            assert state.shape[0] == 2
            return np.repeat(0.1 * np.arange(6.0)[:, None], 14, axis=1)

    sim = DualArmSim()
    targets = []
    set_targets = sim.set_targets
    sim.set_targets = lambda t: (targets.append(np.asarray(t).copy()), set_targets(t))
    episode = rollout(StepNumbers(), sim, "lift", 0, step_hz=10.0, time_limit_s=0.6)
    substeps = round(COMMAND_HZ / 10.0)
    executed = targets[-6 * substeps:]  # the episode's reset set targets before them
    starts = [executed[k * substeps][0] for k in range(6)]
    # the window starts at the older observation: step 1 is due at the newest one, step 0 is already past
    np.testing.assert_allclose(starts, [0.1, 0.2, 0.3, 0.1, 0.2, 0.3], atol=1e-12)
    assert episode.chunks == 2


def test_the_closed_loop_retraces_a_demonstration_given_its_own_training_windows(tmp_path):
    from dbp_control.core.data.dataset import BuildConfig, compile_episode
    from dbp_control.core.evaluation.closed_loop import rollout
    from dbp_control.core.sim.record import record_episode
    from dbp_control.core.sim.robot import DualArmSim
    from dbp_control.core.sim.tasks import make_task

    sim = DualArmSim()
    recorded = record_episode(sim, make_task("lift"), 3, tmp_path, images=False)
    demo, _ = compile_episode(recorded.path, BuildConfig(cameras=(), objects=True))
    seen = []

    class Demonstration:  # at step k, the window a training sample with newest observation k would hold
        n_obs_steps, n_action_steps, cameras, state_keys = 2, 8, (), ("joints", "objects")
        step = 0

        def image_size(self, camera):
            raise AssertionError("no cameras")

        def predict(self, state, images=None):
            seen.append((self.step, state[-1, :14]))
            window = np.clip(np.arange(self.step - 1, self.step + 15), 0, len(demo) - 1)
            self.step += self.n_action_steps
            return demo.action[window]

    assert rollout(Demonstration(), sim, "lift", 3, step_hz=10.0).success
    errors = [np.abs(joints - demo.state[k]).max() for k, joints in seen if k < len(demo)]
    # executed from the newest observation's step, the arms follow the demonstration within its tracking
    # noise; a step late, they trail it by one step's motion
    assert len(errors) >= 4 and max(errors) < 0.03, errors


def test_cli_train_export_eval(tmp_path):
    dataset = make_dataset(tmp_path / "ds.zarr")
    cli = [sys.executable, "-m", "dbp_control.cli.main"]
    train = subprocess.run(cli + ["train", str(dataset), "--down-dims", "16,32", "--horizon", "8", "--n-action-steps", "4",
                                  "--steps", "2", "--batch-size", "4", "--state-noise", "0.05", "--object-noise", "0.2",
                                  "--zero-noise-weight", "0.5", "--out", str(tmp_path / "t"), "--quiet"],
                           capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    assert "validation loss" in train.stdout and (tmp_path / "t" / "loss.png").exists()
    saved = read_checkpoint(tmp_path / "t" / "checkpoint.pt")
    assert (saved["metadata"]["recipe"]["state_noise"], saved["metadata"]["recipe"]["object_noise"]) == (0.05, 0.2)
    assert saved["policy_config"]["zero_noise_weight"] == 0.5
    assert tuple(saved["train_config"]["state_noise"]) == (0.05,) * 14 + (0.2,) * 14
    bad_noise = subprocess.run(cli + ["train", str(dataset), "--state-noise", "-1"], capture_output=True, text=True,
                               timeout=120)
    assert bad_noise.returncode == 2 and "--state-noise: must be a finite number >= 0, got -1" in bad_noise.stderr
    bad_lr = subprocess.run(cli + ["bench", "policy", "--dbp-lr", "0", "--out", str(tmp_path / "b")], capture_output=True,
                            text=True, timeout=120)
    assert bad_lr.returncode == 2 and "--dbp-lr: must be a finite number > 0, got 0" in bad_lr.stderr
    bad_weight = subprocess.run(cli + ["bench", "policy", "--zero-noise-weight", "-1", "--out", str(tmp_path / "b")],
                                capture_output=True, text=True, timeout=120)
    assert bad_weight.returncode == 2 and "--zero-noise-weight: must be a finite number >= 0, got -1" in bad_weight.stderr
    twice = subprocess.run(cli + ["bench", "policy", "--noise-scale", "0", "--noise-scale", "0", "--out",
                                  str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert twice.returncode == 2 and "noise_scales must be one or more different scales, got [0.0, 0.0]" in twice.stderr
    other_task = subprocess.run(cli + ["bench", "policy", "--task", "handover", "--state-noise", "0.1", "--state-noise",
                                       "lift=0", "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert other_task.returncode == 2 and "task_state_noise names task(s) ['lift']" in other_task.stderr
    one_task_twice = subprocess.run(cli + ["bench", "policy", "--object-noise", "lift=0.1", "--object-noise", "lift=0.2",
                                           "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert one_task_twice.returncode == 2 and "--object-noise: give at most one STD, and one TASK=STD per task" \
        in one_task_twice.stderr
    assert not (tmp_path / "b").exists()  # refused before any demonstration is recorded
    seed_twice = subprocess.run(cli + ["bench", "policy", "--seed", "1", "--seed", "1", "--out", str(tmp_path / "b")],
                                capture_output=True, text=True, timeout=120)
    assert seed_twice.returncode == 2 and "seeds must be one or more different integers >= 0, got [1, 1]" in \
        seed_twice.stderr
    assert not (tmp_path / "b").exists()
    export = subprocess.run(cli + ["export", str(tmp_path / "t" / "checkpoint.pt"), "--out", str(tmp_path / "m")],
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr
    ev = subprocess.run(cli + ["eval", str(tmp_path / "m"), "--task", "lift", "--episodes", "1", "--strip", "1",
                               "--out", str(tmp_path / "e"), "--quiet", "--noise-scale", "0.5"],
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    # two training steps: success is up to chance (it differed between CPUs), the report's form is not
    assert re.search(r"^lift: [01]/1 successful \(", ev.stdout, re.MULTILINE), ev.stdout
    assert "ONNX Runtime (CPUExecutionProvider, float32 head), noise scale 0.5," in ev.stdout
    assert (tmp_path / "e" / "eval_lift.png").exists()
    bad = subprocess.run(cli + ["eval", str(tmp_path / "m"), "--task", "juggle"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "unknown task 'juggle'" in bad.stderr
    bad_scale = subprocess.run(cli + ["eval", str(tmp_path / "m"), "--task", "lift", "--noise-scale", "-1"],
                               capture_output=True, text=True, timeout=120)
    assert bad_scale.returncode == 2 and "--noise-scale: must be" in bad_scale.stderr, bad_scale.stderr
    for policy, message in ((tmp_path / "m", r"has no graph\(s\) \['head_int8'\] \(export with --int8-head\)"),
                            (tmp_path / "t" / "checkpoint.pt", r"--head-precision int8 needs an exported folder")):
        int8 = subprocess.run(cli + ["eval", str(policy), "--task", "lift", "--head-precision", "int8"],
                              capture_output=True, text=True, timeout=120)
        assert int8.returncode == 2 and re.search(message, int8.stderr), int8.stderr


def test_inference_loop_reuses_per_frame_features_and_matches_a_direct_prediction(tmp_path):
    from dbp_control.core.data.bags import image_msg
    from dbp_control.core.inference.loop import InferenceLoop, rgb_features
    from dbp_control.core.observation.images import decode_image
    from dbp_control.core.observation.assembler import ObservationAssembler
    from dbp_control.core.observation.images import resize_rgb

    dataset = make_dataset(tmp_path / "img.zarr", cameras=CAMERAS, objects=False)
    train_on_dataset(dataset, TrainRecipe(method="dbp", obs="image", **TINY), tmp_path / "train", progress=False)
    export_policy(tmp_path / "train" / "checkpoint.pt", tmp_path / "m")
    loop = InferenceLoop(PolicyEngine(tmp_path / "m"))
    noise = {"z": np.zeros((1, 8, 14), np.float32)}
    loop.engine.noise = lambda: noise  # the loop draws (and then holds) its noise from here
    encoded = []
    assembler = ObservationAssembler(CAMERAS, queue_size=10, slop_s=0.025,
                                     convert=lambda cam, msg: encoded.append(cam)
                                     or rgb_features(loop.engine, cam, decode_image(msg)))
    rng = np.random.default_rng(4)
    frames = {cam: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for cam in CAMERAS}
    ms = 1_000_000
    assembler.push_joint_state(0, np.zeros(14), now_ns=0)
    for cam in CAMERAS:
        assembler.push_image(cam, 1 * ms, image_msg("humble", 1 * ms, cam, frames[cam]), now_ns=1 * ms)
    chunks = []
    for tick in range(1, 12):  # 100 Hz for 110 ms: the frames are encoded once
        assembler.push_joint_state(tick * 10 * ms, np.full(14, tick / 100), now_ns=tick * 10 * ms)
        chunks.append(loop.step(assembler.observation(tick * 10 * ms)))
    assert sorted(encoded) == sorted(CAMERAS)
    last = chunks[-1]
    assert last.actions.shape == (7, 14) and last.stamp_ns == 110 * ms and last.step_s == pytest.approx(0.1)
    images = {cam: np.stack([resize_rgb(frames[cam], (32, 32))] * 2) for cam in CAMERAS}
    state = np.stack([np.full(14, 0.01), np.full(14, 0.11)]).astype(np.float32)  # 100 ms apart, as trained
    direct = loop.engine.predict(state, images, noise)
    # the chunk published starts at the step due at its observation: the window's second (n_obs_steps = 2)
    np.testing.assert_allclose(loop.step(assembler.observation(110 * ms)).actions, direct[1:], atol=1e-5)
