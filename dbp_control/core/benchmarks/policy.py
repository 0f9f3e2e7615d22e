"""`dbp bench policy`: DBP (1 NFE) against DDIM-10 and DDPM-100 with the identical backbone, in one run:
the same demonstrations and training budget, closed-loop success in the simulation, and the latency of
one action chunk through ONNX Runtime — all measured on this machine, each run.

Per task it records the expert's demonstrations (state observations: joints and object poses), builds
the dataset, trains DBP and DDPM with the same recipe, exports DBP, DDIM-10 (the DDPM network sampled
with 10 DDIM steps) and DDPM-100 to ONNX, and evaluates every export with the engine. With several
training seeds each method is trained once per seed on the same demonstrations, every training is
evaluated on the same episodes, and the goals are judged on the successes summed over seeds: one
training per method can differ from another seed's by more than the methods differ. Everything is
kept under `out_dir`: a second run resumes (training) or reuses (bags, dataset, exports). Each
evaluation is printed and appended to `out_dir/evaluations.jsonl` as soon as it finishes, so a run
stopped part-way keeps what it measured, and the log holds every run's scores side by side. A later run
reuses a logged evaluation of the same graphs on the same episodes by the same code (`evaluation_key`)
instead of repeating it, so a bench too long for one sitting finishes over several.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dbp_control.core.benchmarks.engine import timed_calls
from dbp_control.core.data.dataset import BuildConfig, build_dataset
from dbp_control.core.evaluation.closed_loop import evaluate, wilson_interval
from dbp_control.core.export.onnx_export import export_policy, exporter_fingerprint
from dbp_control.core.export.quantize import quantize_encoder, quantize_head
from dbp_control.core.export.sidecar import SIDECAR, SIDECAR_VERSION, sha256_file
from dbp_control.core.fingerprint import CORE, source_fingerprint
from dbp_control.core.inference.engine import PolicyEngine, session_options
from dbp_control.core.noise import check_noise_scale
from dbp_control.core.policies.dbp.drift import DEFAULT_TEMPERATURES
from dbp_control.core.policies.dbp.modeling import DBPConfig
from dbp_control.core.sim.record import ExecutionNoise, record_episode
from dbp_control.core.sim.robot import DualArmSim
from dbp_control.core.sim.tasks import make_task
from dbp_control.core.training.recipe import TrainRecipe, train_on_dataset

# (label, training method, export sampler, sampler steps)
VARIANTS: tuple[tuple[str, str, str | None, int | None], ...] = (
    ("DBP", "dbp", None, None),
    ("DDIM-10", "diffusion", "ddim", 10),
    ("DDPM-100", "diffusion", "ddpm", 100),
)
EVAL_SEED = 100_000  # evaluation seeds start here, far from the demonstrations' 0 .. demos - 1
EVALUATIONS_LOG = "evaluations.jsonl"


@dataclass
class PolicyBenchConfig:
    out_dir: Path = Path("outputs/bench_policy")
    tasks: tuple[str, ...] = ("lift",)
    demos: int = 200
    # radians: the demonstrations' arms execute the expert's targets plus a drifting offset of this std while
    # the bags record the clean targets (`ExecutionNoise`, DART); 0 records them as the expert acts
    demo_execution_noise: float = 0.0
    steps: int = 3000
    batch_size: int = 64
    preset: str = "small"
    state_noise: float = 0.0  # both methods' training windows (`TrainRecipe.state_noise`)
    object_noise: float | None = None  # on their object poses instead (`TrainRecipe.object_noise`)
    # a task's own values of the two above (task -> std), for both methods
    task_state_noise: dict[str, float] = field(default_factory=dict)
    task_object_noise: dict[str, float] = field(default_factory=dict)
    lr: float = TrainRecipe.lr  # both methods' peak learning rate, unless dbp_lr sets DBP's
    dbp_lr: float | None = None
    # DBP's drift field: observations per step (None: batch_size), samples per observation, neighbour
    # positives and kernel temperatures, its generator's noise skip and the steps it fades over, and the weight
    # that pulls its z = 0 chunk onto the nearest sample (`TrainRecipe`)
    dbp_batch_size: int | None = None
    num_generated: int = DBPConfig.num_generated
    neighbour_positives: int = DBPConfig.neighbour_positives
    noise_skip: float = DBPConfig.noise_skip
    noise_skip_fade_steps: int = DBPConfig.noise_skip_fade_steps
    zero_noise_weight: float = DBPConfig.zero_noise_weight
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    eval_episodes: int = 50
    # each method is evaluated at each sampling-noise scale (`PolicyEngine.noise_scale`; 1: the learned
    # distribution, 0: deterministic), the same scale for every method
    noise_scales: tuple[float, ...] = (1.0,)
    latency_calls: int = 1000  # p99 over fewer calls is one or two outliers; DDPM-100 uses a tenth of this
    threads: int = 2
    seeds: tuple[int, ...] = (0,)  # training seeds: each method is trained (and evaluated) once per seed
    reuse_evaluations: bool = True  # False: evaluate every policy again, even one the log already scored
    progress: bool = True

    def __post_init__(self) -> None:
        self.seeds = tuple(self.seeds)
        ExecutionNoise(self.demo_execution_noise)  # a bad std fails here
        if (not self.seeds or len(set(self.seeds)) != len(self.seeds)
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds)):
            raise ValueError(f"seeds must be one or more different integers >= 0, got {list(self.seeds)}")
        for name in ("task_state_noise", "task_object_noise"):
            unknown = sorted(set(getattr(self, name)) - set(self.tasks))
            if unknown:
                raise ValueError(f"{name} names task(s) {unknown} that this run does not bench "
                                 f"(tasks: {list(self.tasks)})")
        for task in self.tasks:  # bad settings fail here, before any demonstration is recorded
            for method in ("dbp", "diffusion"):
                bench_recipe(self, method, self.seeds[0], task)
        self.noise_scales = tuple(check_noise_scale(scale) for scale in self.noise_scales)
        if not self.noise_scales or len(set(self.noise_scales)) != len(self.noise_scales):
            raise ValueError(f"noise_scales must be one or more different scales, got {list(self.noise_scales)}")


# the issue's figures for the `small` head and a ResNet-18 at 96x96 with ONNX Runtime on 2 threads, on the
# machine its goals were set for: their ratio to this run's shows how much of a miss is the machine
ISSUE_CALIBRATION = {"threads": 2, "head_ms": 1.1, "encoder_ms": 3.1}
CHUNK_TIMING_ROUNDS = 10


@dataclass
class VariantResult:
    task: str
    label: str
    nfe: int
    successes: int
    episodes: int
    latency_ms: list[float] = field(repr=False)
    noise_scale: float = 1.0
    training_seed: int = 0
    evaluated_at: str = ""  # when its episodes ran: this run, or an earlier one whose logged score it reused

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latency_ms, 50))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.latency_ms, 99))


@dataclass
class PolicyBenchResult:
    variants: list[VariantResult]
    head_ms: list[float]  # DBP head only (state + z + FiLM terms -> chunk), at the image policy's shape, one thread
    head_int8_ms: list[float]  # the same, its wide convolutions quantised (`dbp export --int8-head`)
    head_threaded_ms: list[float]  # the float head on `threads` spinning threads, as the issue's calibration ran
    encoder_ms: list[float]  # one camera's ResNet-18 at 96x96
    encoder_int8_ms: list[float]  # the same, quantised to INT8 (`dbp export --int8-encoders`)
    providers: list[str]
    train_seconds: dict[str, float]
    # per task, the std of both methods' training offsets on the state and on the object poses (None: the state's)
    state_offsets: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    demo_execution_noise: float = 0.0  # the demonstrations' (`PolicyBenchConfig.demo_execution_noise`)
    threads: int = PolicyBenchConfig.threads  # ONNX Runtime's for the chunks, the encoders and head_threaded_ms


def task_root(cfg: PolicyBenchConfig, task: str) -> Path:
    """Where a task's demonstrations, dataset, trainings and exports live: demonstrations recorded with
    execution noise get a folder of their own, so that nothing trained on the clean ones is reused."""
    root = cfg.out_dir / task
    return root / f"execution_noise{cfg.demo_execution_noise:g}" if cfg.demo_execution_noise else root


def _record_demos(task: str, bags: Path, demos: int, execution_noise: ExecutionNoise,
                  progress: Callable[[Any], Any]) -> None:
    sim = DualArmSim()
    bags.mkdir(parents=True, exist_ok=True)
    done = {p.name for p in bags.iterdir()}
    task_obj = make_task(task)
    for seed in progress(range(demos)):
        name = f"{task}_seed{seed:06d}"
        if name in done or f"{name}_failed" in done:
            continue  # a resumed run keeps what it recorded
        record_episode(sim, task_obj, seed, bags, images=False, execution_noise=execution_noise)


def _export_if_stale(checkpoint: Path, out: Path, sampler: str | None, steps: int | None) -> None:
    sidecar = out / SIDECAR
    if sidecar.exists():
        import yaml

        recorded = yaml.safe_load(sidecar.read_text())
        source = recorded["source"]
        if (recorded["format_version"] == SIDECAR_VERSION and source["checkpoint_sha256"] == sha256_file(checkpoint)
                and source.get("exporter") == exporter_fingerprint()):
            return
    export_policy(checkpoint, out, overwrite=True, sampler=sampler, inference_steps=steps)


def _image_policy_latency(cfg: PolicyBenchConfig) -> dict[str, list[float]]:
    """Head-only (float32 and INT8) and encoder-only (float32 and INT8) latency of a three-camera DBP policy
    of the same backbone (the weights' values do not change the cost, so an untrained one is exported for
    timing, its INT8 encoder calibrated on random frames). The head runs as the policy node runs it: one intra-op
    thread that does not spin (the encoders use the other core); the encoders, and the float head once more,
    on `cfg.threads` threads, as the issue's calibration figures were taken."""
    import torch

    from dbp_control.core.export.onnx_export import PolicyGraphs, export_graph
    from dbp_control.core.policies.base import make_policy
    from dbp_control.core.policies.dbp.modeling import DBPConfig

    folder = cfg.out_dir / "latency_image_policy"
    folder.mkdir(parents=True, exist_ok=True)
    policy = make_policy(DBPConfig(state_dim=14, action_dim=14, cameras=("left_wrist", "right_wrist", "head"),
                                   preset=cfg.preset)).eval()
    policy.fit_normalizers(torch.randn(64, 2, 14), torch.randn(64, 16, 14))
    with torch.no_grad():  # untrained, every GroupNorm has the same weight and bias, which ONNX Runtime
        for module in policy.modules():  # would store once: give each its own, as training does
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.normal_(1.0, 0.1)
                module.bias.normal_(0.0, 0.1)
    c = policy.config
    graphs = PolicyGraphs(policy)  # as `dbp export` splits a policy
    head_inputs = {"state": torch.randn(1, c.n_obs_steps, 14), "z": torch.randn(1, c.horizon, 14),
                   **{f"condition_{cam}": torch.randn(1, c.n_obs_steps, graphs.film_width) for cam in c.cameras}}
    with torch.no_grad():  # written afresh each run: a graph left by an older version must not be timed
        export_graph(graphs.head, tuple(head_inputs.values()), list(head_inputs), folder / "head.onnx")
        image = torch.randint(0, 256, (1, 96, 96, 3), dtype=torch.uint8)
        export_graph(graphs.encoders["head"], (image,), ["image"], folder / "encoder.onnx")
    feeds = {k: v.numpy() for k, v in head_inputs.items()}
    quantize_head(folder / "head.onnx", folder / "head_int8.onnx", [feeds])
    quantize_encoder(folder / "encoder.onnx", folder / "encoder_int8.onnx",
                     np.random.default_rng(0).integers(0, 256, (16, 96, 96, 3), dtype=np.uint8))
    import onnxruntime as ort

    def session(name: str, threads: int) -> Any:  # one thread: the node's head; more: spinning, as calibrated
        return ort.InferenceSession(str(folder / name), session_options(threads, spinning=threads > 1),
                                    providers=["CPUExecutionProvider"])

    image = {"image": np.random.default_rng(0).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)}
    timed = {"head": ("head.onnx", 1, feeds), "head_int8": ("head_int8.onnx", 1, feeds),
             "head_threaded": ("head.onnx", cfg.threads, feeds),
             "encoder": ("encoder.onnx", cfg.threads, image), "encoder_int8": ("encoder_int8.onnx", cfg.threads, image)}
    return {name: timed_calls(lambda s=session(file, threads), f=inputs: s.run(None, f), cfg.latency_calls)
            for name, (file, threads, inputs) in timed.items()}


def _chunk_latencies(cfg: PolicyBenchConfig, models: dict[str, Path]) -> dict[str, list[float]]:
    """Each graph's milliseconds per chunk. The graphs take turns in `CHUNK_TIMING_ROUNDS` rounds, each
    warmed up right before its block, so a slow spell of the machine falls on all of them alike: timed one
    after another, minutes apart, the same graphs' DDPM-100 / DBP ratio was 107 in one run and 71 in the next
    on this VM. Neither weights nor noise scale change the cost, so one seed's graphs stand for all."""
    runs: dict[str, tuple[Callable[[], Any], int]] = {}
    for label, model in models.items():
        engine = PolicyEngine(model, threads=cfg.threads)
        state, noise = np.zeros((engine.n_obs_steps, engine.state_dim), np.float32), engine.noise()
        calls = max(10, cfg.latency_calls // 10) if engine.sidecar["nfe"] > 10 else cfg.latency_calls
        runs[label] = (lambda e=engine, state=state, noise=noise: e.act(state, noise=noise), calls)
    times: dict[str, list[float]] = {label: [] for label in runs}
    for round_index in range(CHUNK_TIMING_ROUNDS):
        for label, (act, calls) in runs.items():
            block = calls // CHUNK_TIMING_ROUNDS + (round_index < calls % CHUNK_TIMING_ROUNDS)
            if block:
                times[label] += timed_calls(act, block, warmup=max(1, block // 20))
    return times


def evaluation_fingerprint() -> str:
    """The fingerprint of the code a closed-loop score depends on besides the graphs: all of
    `dbp_control.core` but the benchmarks, whose evaluation settings are in `evaluation_key` itself."""
    return source_fingerprint(path.name for path in CORE.iterdir() if path.name != "benchmarks"
                              and (path.suffix == ".py" or (path / "__init__.py").exists()))


def evaluation_key(cfg: PolicyBenchConfig, task: str, label: str, training_seed: int, noise_scale: float,
                   seeds: range, source: dict[str, Any], evaluator: str) -> dict[str, Any]:
    """What a logged evaluation must match to be reused: the same graphs (the checkpoint, from `source`,
    its sidecar's, and the exporter that wrote them), episodes, noise scale and threads, and the same
    simulation, evaluation and engine code (`evaluator`, from `evaluation_fingerprint`)."""
    return {"task": task, "label": label, "training_seed": training_seed,
            "noise_scale": noise_scale, "seeds": [seeds.start, seeds.stop - 1], "threads": cfg.threads,
            "checkpoint_sha256": source["checkpoint_sha256"], "exporter": source["exporter"],
            "evaluator": evaluator}


def _read_evaluations(log: Path) -> list[dict[str, Any]]:
    """Every evaluation the log holds; a line that is not a record stops the run with its place, before the
    bench appends after it."""
    if not log.exists():
        return []
    records = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{log}:{number} is not an evaluation record ({error}); move the file aside or "
                             "remove that line to run the bench") from None
    return records


def _logged_evaluation(evaluations: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, Any] | None:
    """The latest of `evaluations` with this key."""
    matches = [record for record in evaluations if record.get("reuse_key") == key]
    return matches[-1] if matches else None


def _report_evaluation(cfg: PolicyBenchConfig, variant: VariantResult, reused: bool) -> None:
    from tqdm.auto import tqdm

    low, high = wilson_interval(variant.successes, variant.episodes)
    if cfg.progress:
        tqdm.write(f"{variant.task} {variant.label} (training seed {variant.training_seed}, noise scale "
                   f"{variant.noise_scale:g}): {variant.successes}/{variant.episodes} ({low:.0%}-{high:.0%}), "
                   f"chunk p50 {variant.p50:.2f} ms, p99 {variant.p99:.2f} ms"
                   + (f" (reused: evaluated {variant.evaluated_at})" if reused else ""))


def _log_evaluation(cfg: PolicyBenchConfig, variant: VariantResult, seeds: range, key: dict[str, Any],
                    recipe: TrainRecipe) -> dict[str, Any]:
    """Append one evaluation to the log, with what identifies the policy (`key`) and the recipe it was
    trained with, and return its record."""
    record = {"time": variant.evaluated_at, "task": variant.task, "label": variant.label,
              "noise_scale": variant.noise_scale, "training_seed": variant.training_seed,
              "successes": variant.successes, "episodes": variant.episodes,
              "seeds": [seeds.start, seeds.stop - 1], "p50_ms": variant.p50, "p99_ms": variant.p99,
              "checkpoint_sha256": key["checkpoint_sha256"], "state_noise": recipe.state_noise,
              "object_noise": recipe.object_noise, "demo_execution_noise": cfg.demo_execution_noise,
              # the chunk step each execution started at; records without it (before 2026-11-30) started at 0
              "executed_from_step": recipe.n_obs_steps - 1,
              "recipe": asdict(recipe), "reuse_key": key}  # records without a key (before 2026-12-01) are never reused
    with (cfg.out_dir / EVALUATIONS_LOG).open("a") as log:
        log.write(json.dumps(record) + "\n")
    return record


def bench_recipe(cfg: PolicyBenchConfig, method: str, seed: int, task: str) -> TrainRecipe:
    """The recipe `method` trains with on `task` under training seed `seed`: one budget (steps, preset, the
    task's state offsets) for both methods, and DBP's own drift-field settings and, when set, its own
    learning rate."""
    common = {"method": method, "obs": "state", "preset": cfg.preset, "steps": cfg.steps, "seed": seed,
              "state_noise": cfg.task_state_noise.get(task, cfg.state_noise),
              "object_noise": cfg.task_object_noise.get(task, cfg.object_noise)}
    if method != "dbp":
        return TrainRecipe(**common, batch_size=cfg.batch_size, lr=cfg.lr)
    dbp_lr = cfg.lr if cfg.dbp_lr is None else cfg.dbp_lr
    return TrainRecipe(**common, batch_size=cfg.dbp_batch_size or cfg.batch_size, lr=dbp_lr,
                       num_generated=cfg.num_generated, neighbour_positives=cfg.neighbour_positives,
                       noise_skip=cfg.noise_skip, noise_skip_fade_steps=cfg.noise_skip_fade_steps,
                       zero_noise_weight=cfg.zero_noise_weight, temperatures=tuple(cfg.temperatures))


# What a recipe folder's name lists differences from: the defaults when the names were introduced, frozen so
# that changing a default renames no folder, and no earlier folder's name comes to mean another recipe (DBP's
# temperatures and z = 0 weight became 0.2, 0.5, 1 and 1 on 2026-12-03)
FOLDER_NAME_REFERENCE: dict[str, Any] = {"steps": 3000, "lr": 1e-3, "num_generated": 4, "neighbour_positives": 0,
                                         "noise_skip": 0.0, "noise_skip_fade_steps": 0,
                                         "temperatures": (0.02, 0.05, 0.2), "zero_noise_weight": 0.0}


def training_folder(task_root: Path, recipe: TrainRecipe, batch_size: int) -> Path:
    """A folder per recipe variant: a run with another budget, noise level, learning rate or drift field trains
    afresh beside the earlier one (resuming a checkpoint of another recipe is refused) instead of failing on
    it. The name lists how the recipe differs from `FOLDER_NAME_REFERENCE`. `batch_size` is the bench's
    common one; a DBP batch that differs from it is part of the name, as is a training seed other than 0
    (last, so a recipe's seeds sort together)."""
    ref = FOLDER_NAME_REFERENCE
    parts = [recipe.method]
    if recipe.steps != ref["steps"]:
        parts.append(f"steps{recipe.steps}")
    if recipe.state_noise:
        parts.append(f"state_noise{recipe.state_noise:g}")
    if recipe.object_noise is not None:
        parts.append(f"object_noise{recipe.object_noise:g}")
    if recipe.lr != ref["lr"]:
        parts.append(f"lr{recipe.lr:g}")
    if recipe.method == "dbp":
        if recipe.batch_size != batch_size:
            parts.append(f"batch{recipe.batch_size}")
        if recipe.num_generated != ref["num_generated"]:
            parts.append(f"gen{recipe.num_generated}")
        if recipe.neighbour_positives != ref["neighbour_positives"]:
            parts.append(f"neighbours{recipe.neighbour_positives}")
        if recipe.noise_skip != ref["noise_skip"]:
            parts.append(f"skip{recipe.noise_skip:g}")
        if recipe.noise_skip_fade_steps != ref["noise_skip_fade_steps"]:
            parts.append(f"fade{recipe.noise_skip_fade_steps}")
        if tuple(recipe.temperatures) != ref["temperatures"]:
            parts.append("tau" + "-".join(f"{t:g}" for t in recipe.temperatures))
        if recipe.zero_noise_weight != ref["zero_noise_weight"]:
            parts.append(f"zero{recipe.zero_noise_weight:g}")
    return task_root / ("_".join(parts) + _seed_suffix(recipe.seed))


def _seed_suffix(seed: int) -> str:
    """What a training seed adds to a folder's name: nothing for seed 0, where single-seed runs trained."""
    return f"_seed{seed}" if seed else ""


def run_policy_benchmark(cfg: PolicyBenchConfig) -> PolicyBenchResult:
    from tqdm.auto import tqdm

    def bar(desc: str) -> Callable[[Any], Any]:
        return lambda items: tqdm(items, desc=desc, disable=not cfg.progress, leave=False)

    for task in cfg.tasks:
        make_task(task)  # unknown tasks fail before any work
    # read and hashed once, before any work: a damaged log fails here, and the fingerprint is of the code this
    # process loaded, not of whatever is on disk when an evaluation ends
    evaluations = _read_evaluations(cfg.out_dir / EVALUATIONS_LOG)
    evaluator = evaluation_fingerprint()
    variants: list[VariantResult] = []
    providers: list[str] = []
    train_seconds: dict[str, float] = {}
    offsets: dict[str, tuple[float, float | None]] = {}  # per task: both methods' and every seed's
    for task in cfg.tasks:
        root = task_root(cfg, task)
        _record_demos(task, root / "bags", cfg.demos, ExecutionNoise(cfg.demo_execution_noise),
                      bar(f"{task}: demonstrations"))
        dataset = root / "dataset.zarr"
        if not dataset.exists():  # one split for every training seed: the same demonstrations
            build_dataset([root / "bags"], dataset, BuildConfig(cameras=(), objects=True))
        timed: dict[str, list[float]] = {}  # per export label: neither weights nor noise scale change the cost
        for seed in cfg.seeds:
            checkpoints, recipes = {}, {}
            for method in ("dbp", "diffusion"):
                recipe = bench_recipe(cfg, method, seed, task)
                offsets[task] = (recipe.state_noise, recipe.object_noise)
                train_dir = training_folder(root, recipe, cfg.batch_size)
                start = time.perf_counter()
                train_on_dataset(dataset, recipe, train_dir, progress=cfg.progress)
                train_seconds[f"{task}/{method}{_seed_suffix(seed)}"] = time.perf_counter() - start
                checkpoints[method], recipes[method] = train_dir / "checkpoint.pt", recipe
            models = {label: root / "onnx" / (label.lower() + _seed_suffix(seed)) for label, *_ in VARIANTS}
            for label, method, sampler, steps in VARIANTS:
                _export_if_stale(checkpoints[method], models[label], sampler, steps)
            if not timed:  # the first seed's graphs
                timed = _chunk_latencies(cfg, models)
            for label, method, _, _ in VARIANTS:
                for scale in cfg.noise_scales:  # a fresh engine per scale: each scale's noise stream starts alike
                    engine = PolicyEngine(models[label], threads=cfg.threads, noise_scale=scale)
                    providers = engine.providers
                    # one draw before the episodes, as every logged evaluation made (the draw once fed the
                    # timing), so a fresh evaluation reproduces their noise stream and their counts
                    engine.noise()
                    seeds = range(EVAL_SEED, EVAL_SEED + cfg.eval_episodes)  # the same episodes for every training
                    key = evaluation_key(cfg, task, label, seed, scale, seeds, engine.sidecar["source"], evaluator)
                    logged = _logged_evaluation(evaluations, key) if cfg.reuse_evaluations else None
                    if logged is None:
                        evaluation = evaluate(engine, task, seeds, step_hz=float(engine.step_hz),
                                              progress=bar(f"{task}: eval {label}{_seed_suffix(seed)}, noise scale "
                                                           f"{scale:g}"))
                        variant = VariantResult(task, label, int(engine.sidecar["nfe"]), evaluation.successes,
                                                len(evaluation.episodes), timed[label], scale, seed,
                                                time.strftime("%Y-%m-%dT%H:%M:%S"))
                        evaluations.append(_log_evaluation(cfg, variant, seeds, key, recipes[method]))
                    else:
                        variant = VariantResult(task, label, int(engine.sidecar["nfe"]), logged["successes"],
                                                logged["episodes"], timed[label], scale, seed, logged["time"])
                    _report_evaluation(cfg, variant, reused=logged is not None)
                    variants.append(variant)
    # in a fresh process, as the policy node runs: after the evaluations above, this process timed the same
    # graphs a third slower (p50 2.96 against 2.2 ms for the float head)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        image_policy = fresh.submit(_image_policy_latency, cfg).result()
    result = PolicyBenchResult(variants, image_policy["head"], image_policy["head_int8"], image_policy["head_threaded"],
                               image_policy["encoder"], image_policy["encoder_int8"], providers, train_seconds, offsets,
                               cfg.demo_execution_noise, cfg.threads)
    (cfg.out_dir / "results.json").write_text(json.dumps({
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "variants": [{**asdict(v), "p50_ms": v.p50, "p99_ms": v.p99} for v in variants],
        **{f"{name}_ms": {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}
           for name, times in image_policy.items()},
        "providers": providers, "train_seconds": train_seconds,
    }, indent=2))
    plot_policy_benchmark(result, cfg.out_dir / "bench_policy.png")
    return result


def _rows(result: PolicyBenchResult, task: str, label: str, noise_scale: float) -> list[VariantResult]:
    """One row per training seed, in the order they ran."""
    return [v for v in result.variants if v.task == task and v.label == label and v.noise_scale == noise_scale]


def _pooled(rows: list[VariantResult]) -> tuple[int, int]:
    """Successes and episodes summed over training seeds."""
    return sum(v.successes for v in rows), sum(v.episodes for v in rows)


def format_policy_table(result: PolicyBenchResult) -> str:
    """Success summed over training seeds (each seed's beside it), latency and the goals' verdicts."""
    lines = [f"{'task':<10} {'method':<9} {'NFE':>4} {'noise':>6} {'success':>9} {'95% CI':>10} {'p50 ms':>8} "
             f"{'p99 ms':>8} {'p50 / DBP':>9}  per training seed", "-" * 100]
    groups = dict.fromkeys((v.task, v.label, v.noise_scale) for v in result.variants)
    for task, label, scale in groups:
        rows, dbp = _rows(result, task, label, scale), _rows(result, task, "DBP", scale)[0]
        successes, episodes = _pooled(rows)
        low, high = wilson_interval(successes, episodes)
        per_seed = " ".join(f"{v.training_seed}:{v.successes}" for v in rows)
        lines.append(f"{task:<10} {label:<9} {rows[0].nfe:>4} {scale:>6g} {successes:>4}/{episodes:<4} "
                     f"{low:>4.0%}-{high:<4.0%} {rows[0].p50:>8.2f} {rows[0].p99:>8.2f} "
                     f"{rows[0].p50 / dbp.p50:>9.1f}  {per_seed}")
    head, head8, threaded = (np.asarray(times) for times in (result.head_ms, result.head_int8_ms,
                                                             result.head_threaded_ms))
    enc, enc8 = np.asarray(result.encoder_ms), np.asarray(result.encoder_int8_ms)
    lines += [
        "",
        f"one chunk = the head through ONNX Runtime on {result.providers[0] if result.providers else '?'} "
        f"(state policy; the same U-Net as below)",
        f"head only, three-camera image policy (state + z + cameras' FiLM terms -> chunk), one thread, as the "
        f"policy node runs it: p50 {np.percentile(head, 50):.2f} ms, p99 {np.percentile(head, 99):.2f} ms; "
        f"INT8: p50 {np.percentile(head8, 50):.2f} ms, p99 {np.percentile(head8, 99):.2f} ms; "
        f"on {result.threads} spinning threads, as the issue's calibration: p50 {np.percentile(threaded, 50):.2f} ms, "
        f"p99 {np.percentile(threaded, 99):.2f} ms",
        f"encoder only, ResNet-18 at 96x96 and its FiLM terms, one camera: p50 {np.percentile(enc, 50):.2f} ms, "
        f"p99 {np.percentile(enc, 99):.2f} ms; INT8: p50 {np.percentile(enc8, 50):.2f} ms, "
        f"p99 {np.percentile(enc8, 99):.2f} ms",
    ]
    scales = list(dict.fromkeys(v.noise_scale for v in result.variants))
    seeds = list(dict.fromkeys(v.training_seed for v in result.variants))
    over = f" over training seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else ""
    for task in dict.fromkeys(v.task for v in result.variants):
        if task in result.state_offsets:
            state, objects = result.state_offsets[task]
            lines.append(f"{task}: both methods trained on states offset by std {state:g}"
                         + ("" if objects is None else f" (object poses: {objects:g})"))
        if result.demo_execution_noise:
            lines.append(f"{task}: demonstrations recorded with execution noise std {result.demo_execution_noise:g} "
                         "rad (the arms' executed targets offset, the clean targets recorded)")
        for scale in scales:
            (dbp, dbp_n), (ddpm, ddpm_n) = (_pooled(_rows(result, task, label, scale)) for label in ("DBP", "DDPM-100"))
            lines.append(f"{task}, noise scale {scale:g}: DBP success {dbp}/{dbp_n} vs DDPM-100 {ddpm}/{ddpm_n}{over} "
                         f"(goal: at least as successful: {'met' if dbp >= ddpm else 'NOT met'})")
        # every scale's and seed's row carries the same timing of its graph
        dbp, ddpm = _rows(result, task, "DBP", scales[0])[0], _rows(result, task, "DDPM-100", scales[0])[0]
        lines.append(f"{task}: latency ratio DDPM-100 / DBP {ddpm.p50 / dbp.p50:.0f} (goal >= 80: "
                     f"{'met' if ddpm.p50 / dbp.p50 >= 80 else 'NOT met'})")
    for label, times in (("head-only", head), ("INT8 head-only", head8),
                         (f"head-only on {result.threads} threads", threaded)):
        lines.append(f"{label} p99 {np.percentile(times, 99):.2f} ms (goal < 2 ms: "
                     f"{'met' if np.percentile(times, 99) < 2 else 'NOT met'})")
    if result.threads == ISSUE_CALIBRATION["threads"]:  # the goals were set on the machine of these figures
        head_p50, enc_p50 = np.percentile(threaded, 50), np.percentile(enc, 50)
        lines.append(
            f"this machine against the issue's calibration on {result.threads} threads: head p50 {head_p50:.2f} ms "
            f"vs about {ISSUE_CALIBRATION['head_ms']} ms ({head_p50 / ISSUE_CALIBRATION['head_ms']:.1f}x), encoder "
            f"p50 {enc_p50:.2f} ms vs about {ISSUE_CALIBRATION['encoder_ms']} ms "
            f"({enc_p50 / ISSUE_CALIBRATION['encoder_ms']:.1f}x, ours with its FiLM terms)")
    return "\n".join(lines)


def plot_policy_benchmark(result: PolicyBenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # success (summed over training seeds, each seed's a dot) grouped by task and noise scale, latency by
    # task, one colour per method: nine labelled bars side by side overlap
    tasks = list(dict.fromkeys(v.task for v in result.variants))
    scales = list(dict.fromkeys(v.noise_scale for v in result.variants))
    groups = [(task, scale) for task in tasks for scale in scales]
    methods = list(dict.fromkeys(v.label for v in result.variants))
    width = 0.8 / len(methods)
    colours = {"DBP": "C0", "DDIM-10": "C1", "DDPM-100": "C7"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10 + 2 * (len(groups) - len(tasks)) / 3, 3.6),
                                      gridspec_kw={"width_ratios": [len(groups), len(tasks)]})
    for i, method in enumerate(methods):
        offset = (i - (len(methods) - 1) / 2) * width
        rows = [_rows(result, task, method, scale) for task, scale in groups]
        pooled = [_pooled(per_seed) for per_seed in rows]
        rates = np.array([successes / episodes for successes, episodes in pooled])
        bounds = np.array([wilson_interval(successes, episodes) for successes, episodes in pooled])
        colour = colours[method]
        left.bar(np.arange(len(groups)) + offset, rates, width, yerr=[rates - bounds[:, 0], bounds[:, 1] - rates],
                 capsize=3, color=colour, label=method)
        if any(len(per_seed) > 1 for per_seed in rows):
            for x, per_seed in zip(np.arange(len(groups)) + offset, rows, strict=True):
                left.scatter([x] * len(per_seed), [v.successes / v.episodes for v in per_seed], s=10, color="k",
                             zorder=3)
        timed = [_rows(result, task, method, scales[0])[0] for task in tasks]
        x = np.arange(len(tasks)) + offset
        right.bar(x, [v.p50 for v in timed], width, color=colour)  # the colours are the left panel's legend
        right.scatter(x, [v.p99 for v in timed], marker="_", s=80, color="k", zorder=3)
    left.set_xticks(np.arange(len(groups)),
                    [task if len(scales) == 1 else f"{task}\nnoise {scale:g}" for task, scale in groups])
    right.set_xticks(np.arange(len(tasks)), tasks)
    n_seeds = len(dict.fromkeys(v.training_seed for v in result.variants))
    left.set(ylabel="success rate (95% CI)", ylim=(0, 1.05),
             title="closed-loop success" + (f" ({n_seeds} training seeds, dots: each)" if n_seeds > 1 else ""))
    left.legend(fontsize=8)
    right.set_yscale("log")
    right.set(ylabel="ms per chunk (bar p50, mark p99; log)", title="ONNX Runtime latency")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
