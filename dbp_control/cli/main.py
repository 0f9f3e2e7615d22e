"""`dbp`: the command line of dbp_control. Each subcommand is a thin wrapper over the core."""

from __future__ import annotations

import argparse
import faulthandler
import math
import signal
import sys
from pathlib import Path

import numpy as np

from dbp_control.core.benchmarks.multimodal import MultimodalBenchConfig, format_table, run_multimodal_benchmark
from dbp_control.core.paths import CONFIG_DIR
from dbp_control.core.data.bags import BagError
from dbp_control.core.training.checkpoint import CheckpointError
from dbp_control.middleware.port import PortError
from dbp_control.nodes.camera import CameraError


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _task_std(text: str) -> tuple[str | None, float]:
    """`STD` (every task's) or `TASK=STD` (that task's)."""
    task, _, std = text.rpartition("=")
    if "=" in text and not task:
        raise argparse.ArgumentTypeError(f"expected STD or TASK=STD, got {text!r}")
    return task or None, _non_negative_float(std)


def _per_task(values: list[tuple[str | None, float]] | None, option: str, default: float | None
              ) -> tuple[float | None, dict[str, float]]:
    """The common value and the per-task ones of a repeated `STD` / `TASK=STD` option."""
    common = [std for task, std in values or () if task is None]
    named = [(task, std) for task, std in values or () if task is not None]
    per_task = dict(named)
    if len(common) > 1 or len(per_task) != len(named):
        raise ValueError(f"{option}: give at most one STD, and one TASK=STD per task")
    return (common[0] if common else default), per_task


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 32,64,128, got {text!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"U-Net widths must be positive, got {text!r}")
    return dims


def _temperatures(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.02,0.05,0.2, got {text!r}") from None
    if not all(t > 0 for t in values):
        raise argparse.ArgumentTypeError(f"temperatures must be positive, got {text!r}")
    return values


def _listed(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _add_drift_field_options(parser: argparse.ArgumentParser, temperatures: tuple[float, ...],
                             zero_noise_weight: float, default_note: str = "") -> None:
    """A benchmark's --temperatures and --zero-noise-weight for the DBP it trains (`dbp train` explains both)."""
    parser.add_argument("--temperatures", type=_temperatures, default=temperatures,
                        help="DBP: kernel temperatures of the drift field, comma-separated (default: "
                        f"{_listed(temperatures)}{default_note})")
    parser.add_argument("--zero-noise-weight", type=_non_negative_float, default=zero_noise_weight, metavar="W",
                        help=f"DBP: pulls its z = 0 chunk onto the nearest of its samples (see dbp train; default: "
                        f"{zero_noise_weight:g})")


def _bench_multimodal(args: argparse.Namespace) -> int:
    cfg = MultimodalBenchConfig(
        out_dir=args.out,
        train_demos=args.train_demos,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        ema_max_decay=args.ema_decay,
        down_dims=args.down_dims,
        eval_observations=args.eval_observations,
        samples_per_observation=args.samples_per_observation,
        temperatures=args.temperatures,
        zero_noise_weight=args.zero_noise_weight,
        seed=args.seed,
        resume=not args.fresh,
        progress=not args.quiet,
    )
    result = run_multimodal_benchmark(cfg)
    print(format_table(result))
    print(f"\nplot: {cfg.out_dir / 'samples.png'}\nresults: {cfg.out_dir / 'results.json'}")
    return 0


def _bench_policy(args: argparse.Namespace) -> int:
    from dbp_control.core.benchmarks.policy import PolicyBenchConfig, format_policy_table, run_policy_benchmark

    state_noise, task_state_noise = _per_task(args.state_noise, "--state-noise", PolicyBenchConfig.state_noise)
    object_noise, task_object_noise = _per_task(args.object_noise, "--object-noise", PolicyBenchConfig.object_noise)
    cfg = PolicyBenchConfig(out_dir=args.out, tasks=tuple(args.task), demos=args.demos,
                            demo_execution_noise=args.execution_noise, steps=args.steps,
                            batch_size=args.batch_size, preset=args.preset, state_noise=state_noise,
                            object_noise=object_noise, task_state_noise=task_state_noise,
                            task_object_noise=task_object_noise, lr=args.lr, dbp_lr=args.dbp_lr,
                            dbp_batch_size=args.dbp_batch_size,
                            num_generated=args.num_generated, neighbour_positives=args.neighbour_positives,
                            noise_skip=args.noise_skip, noise_skip_fade_steps=args.noise_skip_fade,
                            zero_noise_weight=args.zero_noise_weight, temperatures=args.temperatures,
                            eval_episodes=args.episodes, noise_scales=tuple(args.noise_scale or (1.0,)),
                            seeds=tuple(args.seed or PolicyBenchConfig.seeds), latency_calls=args.latency_calls,
                            threads=args.threads, reuse_evaluations=not args.re_evaluate, progress=not args.quiet)
    result = run_policy_benchmark(cfg)
    print(format_policy_table(result))
    print(f"\nplot: {cfg.out_dir / 'bench_policy.png'}\nresults: {cfg.out_dir / 'results.json'}")
    return 0


def _bench_engine(args: argparse.Namespace) -> int:
    from dbp_control.core.benchmarks.engine import (EngineBenchConfig, format_engine_table, run_engine_benchmark,
                                                    timing_exports)

    models = list(args.model)
    if args.synthetic:
        models += timing_exports(args.synthetic, progress=not args.quiet)
    if not models:
        raise ValueError("no policy to time: name exported policy folders, or --synthetic DIR")
    cfg = EngineBenchConfig(model_dirs=tuple(models), providers=tuple(args.provider or ()), calls=args.calls,
                            threads=args.threads, progress=not args.quiet)
    print(format_engine_table(run_engine_benchmark(cfg), cfg))
    return 0


def _bench_graph(args: argparse.Namespace) -> int:
    from dbp_control.nodes.bench_graph import format_graph_table, run_graph_benchmark

    print(format_graph_table(run_graph_benchmark(args.out, seconds=args.seconds, warmup_s=args.warmup,
                                                 encoder_precision=args.encoder_precision,
                                                 overrides=_node_overrides(args.set))))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from dbp_control.nodes.demo import format_demo, run_demo

    summary = run_demo(args.out, episodes=args.episodes, first_seed=args.seed, task=args.task)
    print(format_demo(summary))
    print(f"plot: {args.out / 'demo.png'}\nsummary: {args.out / 'demo.json'}")
    return 0


def _image_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH like 240x320, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return height, width


def _successes_by_strategy(outcomes: list[tuple[str, bool]]) -> list[tuple[str, int, int]]:
    """(strategy, successes, episodes) per strategy, sorted by name."""
    strategies = sorted({strategy for strategy, _ in outcomes})
    return [(s, sum(ok for name, ok in outcomes if name == s), sum(name == s for name, _ in outcomes)) for s in strategies]


def _sim_record(args: argparse.Namespace) -> int:
    import time

    from tqdm.auto import tqdm

    from dbp_control.core.sim.record import ExecutionNoise, record_episode
    from dbp_control.core.sim.robot import DualArmSim
    from dbp_control.core.sim.tasks import make_task

    task = make_task(args.task)
    execution_noise = ExecutionNoise(args.execution_noise)
    sim = DualArmSim(image_size=args.image_size)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    start = time.perf_counter()
    bar = tqdm(range(args.seed, args.seed + args.episodes), desc=f"record {args.task}", disable=args.quiet)
    for seed in bar:
        episode = record_episode(sim, task, seed, args.out, storage=args.storage, distro=args.distro,
                                 compress=args.compress, keep_failure=args.keep_failures, images=not args.no_images,
                                 execution_noise=execution_noise)
        results.append(episode)
        bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
    minutes = (time.perf_counter() - start) / 60
    kept = [r for r in results if r.path is not None]
    print(f"{args.task}: {sum(r.success for r in results)}/{len(results)} successful, {len(kept)} bags in {args.out}")
    for strategy, ok, total in _successes_by_strategy([(r.strategy, r.success) for r in results]):
        print(f"  {strategy}: {ok}/{total}")
    print(f"{len(results) / minutes:.1f} episodes per minute; "
          f"{np.mean([r.bytes for r in kept]) / 1e6 if kept else 0:.1f} MB per kept episode ({args.storage}"
          f"{', zstd' if args.compress else ''}, "
          + ("no images)" if args.no_images else f"{args.image_size[0]}x{args.image_size[1]} images)"))
    return 0


def _sim_experts(args: argparse.Namespace) -> int:
    import time

    from tqdm.auto import tqdm

    from dbp_control.core.sim.experts import run_episode
    from dbp_control.core.sim.robot import DualArmSim
    from dbp_control.core.sim.tasks import TASKS, make_task

    names = sorted(TASKS) if args.task == "all" else [args.task]
    tasks = [make_task(name) for name in names]  # unknown names fail before any simulation
    sim = DualArmSim()
    print(f"{'task':<10} {'strategy':<18} {'success':>9}")
    for task in tasks:
        start = time.perf_counter()
        outcomes = []
        for seed in tqdm(range(args.seed, args.seed + args.episodes), desc=task.name, disable=args.quiet, leave=False):
            ok, strategy = run_episode(sim, task, seed)
            outcomes.append((strategy, ok))
        for strategy, ok, total in _successes_by_strategy(outcomes):
            print(f"{task.name:<10} {strategy:<18} {ok:>4}/{total:<4}")
        done = sum(ok for _, ok in outcomes)
        print(f"{task.name:<10} {'all':<18} {done:>4}/{args.episodes:<4} ({time.perf_counter() - start:.1f} s, no rendering)")
    return 0


def _cameras(text: str) -> tuple[str, ...]:
    return tuple(c for c in text.split(",") if c) if text != "none" else ()


def _dataset_build(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from dbp_control.core.data.dataset import BuildConfig, build_dataset

    cfg = BuildConfig(cameras=args.cameras, image_size=args.image_size, rate_hz=args.rate, objects=args.objects,
                      queue_size=args.queue_size, slop_s=args.slop, val_fraction=args.val_fraction, seed=args.seed,
                      include_failures=args.include_failures, distro=args.distro)
    report = build_dataset(args.bags, args.out, cfg,
                           progress=lambda bags: tqdm(bags, desc="episodes", unit="bag", disable=args.quiet))
    for bag, reason in report.skipped:
        print(f"skipped {bag}: {reason}", file=sys.stderr)
    print(f"{report.out}: {report.episodes} episodes, {report.steps} steps "
          f"(train {len(report.split['train'])}, val {len(report.split['val'])} episodes), "
          f"{len(report.skipped)} skipped")
    per_episode = report.bytes / report.episodes
    print(f"{report.bytes / 1e6:.2f} MB, {per_episode / 1e3:.1f} kB per episode; "
          f"built in {report.seconds:.1f} s ({(report.episodes + len(report.skipped)) / report.seconds:.2f} bags/s, "
          f"{report.steps / report.seconds:.0f} steps/s)")
    return 0


def _dataset_info(args: argparse.Namespace) -> int:
    from dbp_control.core.data.dataset import Dataset, measure_read_throughput

    ds = Dataset(args.dataset)
    tasks = sorted({str(e.get("task")) for e in ds.episodes})
    print(f"{ds.path}: {len(ds.episodes)} episodes ({', '.join(tasks)}), {ds.steps} steps at {ds.build['rate_hz']} Hz; "
          f"train {len(ds.split['train'])}, val {len(ds.split['val'])}")
    state_dim, action_dim = ds.array("state").shape[1], ds.array("action").shape[1]
    source = ds.layout.get("source", "robot topics")
    print(f"state {state_dim}-D, action {action_dim}-D, from {source}; object poses: "
          f"{'yes' if ds.layout.get('objects') else 'no'}")
    for cam, spec in ds.layout["cameras"].items():
        print(f"camera {cam}: {spec['size'][0]}x{spec['size'][1]} from {spec['topic']}")
    if args.bench:
        t = measure_read_throughput(ds, batch_size=args.batch_size)
        print(f"load into memory: {t.load_seconds:.2f} s ({t.load_mb_per_s:.0f} MB/s uncompressed); "
              f"random batches of {args.batch_size}: {t.batches_per_s:.0f} batches/s, {t.samples_per_s:.0f} samples/s")
    return 0


def _train(args: argparse.Namespace) -> int:
    from dbp_control.core.training.recipe import TrainRecipe, train_on_dataset

    recipe = TrainRecipe(method=args.method, obs=args.obs, preset=args.preset, down_dims=args.down_dims or (),
                         horizon=args.horizon, n_obs_steps=args.n_obs_steps, n_action_steps=args.n_action_steps,
                         steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_max_decay=args.ema_decay,
                         seed=args.seed, num_generated=args.num_generated, temperatures=args.temperatures,
                         neighbour_positives=args.neighbour_positives, noise_skip=args.noise_skip,
                         noise_skip_fade_steps=args.noise_skip_fade, zero_noise_weight=args.zero_noise_weight,
                         state_noise=args.state_noise, object_noise=args.object_noise)
    out = args.out or Path("outputs") / "train" / f"{args.dataset.stem}_{args.method}_{args.obs}"
    result = train_on_dataset(args.dataset, recipe, out, resume=not args.fresh, progress=not args.quiet)
    resumed = f" (resumed from step {result.train.resumed_from})" if result.train.resumed_from else ""
    print(f"trained {args.method} ({args.obs}) for {result.train.steps_done} steps{resumed}: "
          f"final loss {result.train.last_metrics.get('loss', float('nan')):.4g}"
          + (f", validation loss {result.validation_loss:.4g}" if result.validation_loss is not None else ""))
    print(f"checkpoint: {out / 'checkpoint.pt'}\nmetrics: {out / 'metrics.jsonl'}\nloss plot: {result.loss_plot}")
    return 0


def load_chunk_policy(path: Path, *, seed: int = 0, head_precision: str = "float32",  # noqa: ANN201 (a ChunkPolicy)
                      noise_scale: float = 1.0):
    """An exported policy folder (ONNX Runtime) or a training checkpoint (torch), with its step rate."""
    from dbp_control.core.evaluation.closed_loop import TorchChunkPolicy
    from dbp_control.core.inference.engine import PolicyEngine
    from dbp_control.core.training.checkpoint import load_policy, read_checkpoint

    if path.is_dir():
        engine = PolicyEngine(path, head_precision=head_precision, noise_scale=noise_scale)
        return engine, float(engine.step_hz), f"ONNX Runtime ({engine.providers[0]}, {head_precision} head)"
    if head_precision != "float32":
        raise ValueError(f"--head-precision {head_precision} needs an exported folder (`dbp export --int8-head`), "
                         f"not the checkpoint {path}")
    metadata = read_checkpoint(path).get("metadata") or {}
    if "dataset" not in metadata:
        raise ValueError(f"{path} was not made by `dbp train` (no dataset layout and step rate in it)")
    policy = TorchChunkPolicy(load_policy(path), tuple(metadata["state_keys"]), seed=seed, noise_scale=noise_scale)
    return policy, float(metadata["dataset"]["rate_hz"]), "torch"


def _eval(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from dbp_control.core.evaluation.closed_loop import evaluate, save_image_strip
    from dbp_control.core.sim.tasks import make_task

    make_task(args.task)  # an unknown task fails before loading anything
    policy, step_hz, runtime = load_chunk_policy(args.policy, seed=args.seed, head_precision=args.head_precision,
                                                 noise_scale=args.noise_scale)
    seeds = range(args.seed, args.seed + args.episodes)
    result = evaluate(policy, args.task, seeds, step_hz=step_hz, strip_episodes=args.strip,
                      progress=lambda s: tqdm(s, desc=f"eval {args.task}", disable=args.quiet))
    low, high = result.interval
    print(f"{args.task}: {result.successes}/{len(result.episodes)} successful ({result.rate:.0%}, 95% CI "
          f"{low:.0%}-{high:.0%}), policy {args.policy} via {runtime}, noise scale {args.noise_scale:g}, "
          f"seeds {seeds.start}-{seeds.stop - 1}")
    if args.strip:
        args.out.mkdir(parents=True, exist_ok=True)
        strip = args.out / f"eval_{args.task}.png"
        save_image_strip(result, strip)
        print(f"image strip: {strip}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import yaml

    from dbp_control.core.export.onnx_export import export_policy
    from dbp_control.core.paths import MODELS_DIR

    out = args.out or MODELS_DIR / args.checkpoint.parent.name
    if args.calibration is not None and not args.int8_encoders:
        raise SystemExit("--calibration is for --int8-encoders")
    sidecar = export_policy(args.checkpoint, out, overwrite=args.overwrite, sampler=args.sampler,
                            inference_steps=args.inference_steps, int8_encoders=args.int8_encoders,
                            int8_head=args.int8_head, calibration=args.calibration)
    print(f"exported {args.checkpoint} -> {out} ({', '.join(sorted(p.name for p in out.glob('*.onnx')))}; {sidecar.name})")
    graphs = yaml.safe_load(sidecar.read_text())["graphs"]
    for name, graph in graphs.items():
        if "int8" in graph:
            int8 = graph["int8"]
            error = int8["output_relative_error"]
            tested = (f"{int8['held_out_frames']} held-out frames" if "held_out_frames" in int8
                      else f"{int8['test_inputs']} states across the normaliser's range")
            absolute = (f"; largest action difference {int8['output_max_abs_error']['max']:.4f} (robot units)"
                        if "output_max_abs_error" in int8 else "")
            print(f"  {name}: output error vs float32 on {tested}: mean {error['mean']:.2%}, max {error['max']:.2%}"
                  + absolute)
    return 0


def _sim_metaworld(args: argparse.Namespace) -> int:
    import time

    from tqdm.auto import tqdm

    from dbp_control.core.sim.metaworld_experts import metaworld_envs, run_metaworld_expert, write_metaworld_dataset

    known = metaworld_envs()
    envs = known if args.env == ["all"] else args.env
    unknown = sorted(set(envs) - set(known))
    if unknown:
        raise ValueError(f"unknown Meta-World environment(s) {unknown}; known: {known}")
    start = time.perf_counter()
    runs = ((env, seed) for env in envs for seed in range(args.seed, args.seed + args.episodes))
    episodes = (run_metaworld_expert(env, seed) for env, seed in runs)
    bar = lambda items: tqdm(items, total=len(envs) * args.episodes, desc="Meta-World", disable=args.quiet)  # noqa: E731
    if args.out is None:
        ran = list(bar(episodes))
    else:
        writer, ran = write_metaworld_dataset(episodes, args.out, progress=bar)
    print(f"{'environment':<28} {'success':>9}")
    for env in envs:
        outcomes = [e.success for e in ran if e.env_name == env]
        print(f"{env:<28} {sum(outcomes):>4}/{len(outcomes):<4}")
    print(f"{len(ran) / (time.perf_counter() - start) * 60:.0f} episodes per minute (state observations)")
    if args.out is not None:
        print(f"dataset: {writer.out} ({len(writer.episodes)} successful episodes, {writer.bytes / 1e6:.2f} MB)")
    return 0


def _sim_robot(args: argparse.Namespace) -> int:
    args.executable, args.name = "sim_robot", None  # the same as `dbp node sim_robot`
    return _node(args)


def _node(args: argparse.Namespace) -> int:
    from dbp_control.nodes import node_class
    from dbp_control.nodes.runner import parse_overrides, run_node

    cls = node_class(args.executable)
    default = CONFIG_DIR / f"{args.executable}.yaml"
    params = args.params if args.params else [default] if default.exists() else []
    run_node(args.name or args.executable, cls, parameters_files=params, overrides=parse_overrides(args.set),
             endpoint=args.endpoint, distro=args.distro, duration_s=args.duration)
    return 0


def _node_overrides(items: list[str]) -> dict[str, list[str]]:
    """`--set NODE.NAME=VALUE` items -> {node: ["NAME=VALUE", ...]}."""
    overrides: dict[str, list[str]] = {}
    for item in items:
        node, dot, pair = item.partition(".")
        if not dot or "=" not in pair:
            raise ValueError(f"--set {item!r}: expected NODE.NAME=VALUE, e.g. policy.rate_hz=200")
        overrides.setdefault(node, []).append(pair)
    return overrides


def _launch(args: argparse.Namespace) -> int:
    from dbp_control.nodes.launcher import launch

    return launch(args.mode, endpoint=args.endpoint, overrides=_node_overrides(args.set), duration_s=args.duration,
                  distro=args.distro)


def _bag_recover(args: argparse.Namespace) -> int:
    from dbp_control.core.data.recover import recover_bag

    report = recover_bag(args.damaged, args.out, distro=args.distro, storage=args.storage, compress=args.compress)
    print(f"recovered {report.messages} messages into {report.out} "
          f"({', '.join(f'{t}: {n}' for t, n in sorted(report.topics.items()))}); "
          f"{report.truncated_bytes} unreadable bytes at the end were left behind")
    return 0


def _zenoh_router(args: argparse.Namespace) -> int:
    import threading

    from dbp_control.middleware.zenoh_backend import open_router
    from dbp_control.nodes.runner import stop_on_signals

    router = open_router(args.endpoint)
    print(f"Zenoh router on {args.endpoint} (Ctrl-C stops it)", flush=True)
    stop = threading.Event()
    with stop_on_signals(stop):
        stop.wait()
    router.close()
    return 0


def _add_node_options(parser: argparse.ArgumentParser, default_params: Path | str) -> None:
    from dbp_control.middleware.zenoh_backend import DEFAULT_ENDPOINT, ENDPOINT_ENV

    parser.add_argument("--params", type=Path, action="append", default=None,
                        help=f"ROS 2 parameters YAML (repeatable, later files win; default {default_params})")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override one parameter")
    parser.add_argument("--endpoint", default=None,
                        help=f"Zenoh endpoint to connect to (default ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT})")
    parser.add_argument("--distro", choices=("humble", "jazzy"), default="humble", help="message definitions on the wire")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbp", description="Drift-Based Policy control stack")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bench = commands.add_parser("bench", help="benchmarks that print measured tables")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    mm = benches.add_parser(
        "multimodal",
        help="DBP vs diffusion (DDPM-100, DDIM-10) vs BC on a bimodal obstacle task",
        description="Trains the three methods with one backbone on the same demonstrations, then prints NFE, "
        "latency, mode balance, collisions, distance to the nearest mode and energy distance to held-out "
        "expert samples, and writes a plot of sampled chunks. Training resumes from checkpoints in --out.",
    )
    d = MultimodalBenchConfig()
    mm.add_argument("--out", type=Path, default=d.out_dir, help="output folder")
    mm.add_argument("--steps", type=_positive_int, default=d.steps, help="training steps per method")
    mm.add_argument("--batch-size", type=_positive_int, default=d.batch_size, help="observations per batch")
    mm.add_argument("--lr", type=_positive_float, default=d.lr, help="peak learning rate (all methods)")
    mm.add_argument("--ema-decay", type=float, default=d.ema_max_decay, help="maximum EMA decay (all methods)")
    mm.add_argument("--train-demos", type=_positive_int, default=d.train_demos, help="expert demonstrations")
    mm.add_argument("--down-dims", type=_dims, default=d.down_dims, help="U-Net widths, e.g. 64,128,256")
    mm.add_argument("--eval-observations", type=_positive_int, default=d.eval_observations, help="test observations")
    mm.add_argument("--samples-per-observation", type=_positive_int, default=d.samples_per_observation,
                    help="samples per test observation")
    _add_drift_field_options(mm, d.temperatures, d.zero_noise_weight,
                             ", the field the README's figures were measured with")
    mm.add_argument("--seed", type=int, default=d.seed)
    mm.add_argument("--fresh", action="store_true", help="ignore checkpoints in --out and train from scratch")
    mm.add_argument("--quiet", action="store_true", help="no progress bars")
    mm.set_defaults(func=_bench_multimodal)
    from dbp_control.core.benchmarks.policy import PolicyBenchConfig

    pb_defaults = PolicyBenchConfig()
    pb = benches.add_parser(
        "policy", help="DBP vs DDIM-10 vs DDPM-100 on the simulated tasks: success and ONNX Runtime latency",
        description="Records demonstrations, builds the dataset, trains DBP and DDPM with the same backbone and "
        "budget, exports DBP, DDIM-10 and DDPM-100 to ONNX and prints closed-loop success (95%% CI) and the latency "
        "of one chunk through ONNX Runtime, with ratios to DBP, plus head-only and encoder-only latency. Work is "
        "kept in --out: a second run resumes.")
    pb.add_argument("--task", action="append", default=None, help="task (repeatable; default lift)")
    pb.add_argument("--out", type=Path, default=pb_defaults.out_dir)
    pb.add_argument("--demos", type=_positive_int, default=pb_defaults.demos, help="demonstrations per task")
    pb.add_argument("--execution-noise", type=_non_negative_float, default=pb_defaults.demo_execution_noise,
                    metavar="STD", help="the demonstrations are recorded as `dbp sim record --execution-noise` "
                    "records them (radians; default 0), in a folder of their own under the task's")
    pb.add_argument("--steps", type=_positive_int, default=pb_defaults.steps, help="training steps per method")
    pb.add_argument("--batch-size", type=_positive_int, default=pb_defaults.batch_size)
    pb.add_argument("--preset", default=pb_defaults.preset, help="U-Net preset (small, paper)")
    pb.add_argument("--state-noise", type=_task_std, action="append", default=None, metavar="[TASK=]STD",
                    help="both methods: std of the training windows' state offsets (see dbp train); TASK=STD sets "
                    f"one task's (repeatable; default {pb_defaults.state_noise:g})")
    pb.add_argument("--object-noise", type=_task_std, action="append", default=None, metavar="[TASK=]STD",
                    help="both methods: their std on the object poses instead (see dbp train); TASK=STD sets one "
                    "task's (repeatable)")
    pb.add_argument("--lr", type=_positive_float, default=pb_defaults.lr, help="both methods: peak learning rate")
    pb.add_argument("--dbp-lr", type=_positive_float, default=None, help="DBP: peak learning rate (default: --lr)")
    pb.add_argument("--dbp-batch-size", type=_positive_int, default=None,
                    help="DBP: observations per step (default: --batch-size); it draws --num-generated samples of each")
    pb.add_argument("--num-generated", type=_positive_int, default=pb_defaults.num_generated,
                    help="DBP: samples per observation (G)")
    pb.add_argument("--neighbour-positives", type=_non_negative_int, default=pb_defaults.neighbour_positives,
                    metavar="K", help="DBP: nearest other demonstrations' chunks joining each window's own as positives")
    pb.add_argument("--noise-skip", type=_non_negative_float, default=pb_defaults.noise_skip, metavar="C",
                    help="DBP: its generator outputs C * z + U-Net(z, obs) (see dbp train)")
    pb.add_argument("--noise-skip-fade", type=_non_negative_int, default=pb_defaults.noise_skip_fade_steps,
                    metavar="N", help="DBP: C falls linearly to 0 over the first N training steps (see dbp train)")
    _add_drift_field_options(pb, pb_defaults.temperatures, pb_defaults.zero_noise_weight)
    pb.add_argument("--episodes", type=_positive_int, default=pb_defaults.eval_episodes, help="evaluation episodes")
    pb.add_argument("--noise-scale", type=_non_negative_float, action="append", default=None, metavar="S",
                    help="every method is evaluated at each of these sampling-noise scales (repeatable; default 1: "
                    "the learned distribution; 0: deterministic; see dbp eval)")
    pb.add_argument("--seed", type=_non_negative_int, action="append", default=None, metavar="N",
                    help="training seed (repeatable; default 0): each method is trained once per seed on the same "
                    "demonstrations, each training evaluated on the same episodes, and the goals judged on the "
                    "successes summed over seeds")
    pb.add_argument("--latency-calls", type=_positive_int, default=pb_defaults.latency_calls)
    pb.add_argument("--threads", type=_positive_int, default=pb_defaults.threads, help="ONNX Runtime threads")
    pb.add_argument("--re-evaluate", action="store_true",
                    help="evaluate every policy again, even one that evaluations.jsonl already scored on the same "
                    "episodes with the same code (reused by default)")
    pb.add_argument("--quiet", action="store_true", help="no progress bars")
    pb.set_defaults(func=_bench_policy)
    bg = benches.add_parser(
        "graph", help="the full node graph over Zenoh with three 640x480 cameras: rate, latency, CPU per node",
        description="Starts the simulated robot (three 640x480 cameras at 30 Hz), the policy node with a "
        "three-camera DBP image policy and the command node as processes over Zenoh, then prints the sustained "
        "control rate, observation-to-command latency (p50, p99, max) and CPU per node.")
    bg.add_argument("--out", type=Path, default=Path("outputs/bench_graph"), help="where the benchmark's model goes")
    bg.add_argument("--seconds", type=float, default=60.0, help="measured window")
    bg.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    bg.add_argument("--encoder-precision", choices=("float32", "int8"), default="float32",
                    help="the policy's image encoders: float32, or INT8 as `dbp export --int8-encoders` writes them")
    bg.add_argument("--set", action="append", default=[], metavar="NODE.NAME=VALUE",
                    help="override a node's parameter (nodes: sim_robot, policy, dual_arm_command)")
    bg.set_defaults(func=_bench_graph)

    be = benches.add_parser(
        "engine", help="exported policies through the engine: the provider each got, parity with the CPU, latency",
        description="Loads each exported policy folder with the inference engine and prints the provider its "
        "sessions got, the largest difference of its chunks from ONNX Runtime's CPU provider on the same random "
        "inputs, and the head-only, encoder-only and whole-chunk latency (median / p99). Run it after installing "
        "onnxruntime-gpu to see that the GPU is used and what it gains.")
    be.add_argument("model", type=Path, nargs="*", help="exported policy folder(s) (`dbp export`)")
    be.add_argument("--synthetic", type=Path, default=None, metavar="DIR",
                    help="also time the small backbone as state DBP, DDIM-10, DDPM-100 and three-camera image DBP, "
                    "trained 2 steps on synthetic data and exported into DIR (made afresh; refused if DIR holds anything else)")
    be.add_argument("--provider", action="append", default=None, metavar="NAME",
                    help="ONNX Runtime provider to require, e.g. CUDAExecutionProvider (repeatable, in order; "
                    "default: TensorRT, CUDA, CPU, whichever are available)")
    be.add_argument("--calls", type=_positive_int, default=1000, help="timed calls per measurement")
    be.add_argument("--threads", type=_positive_int, default=2, help="the head's ONNX Runtime threads")
    be.add_argument("--quiet", action="store_true", help="no progress bar")
    be.set_defaults(func=_bench_engine)

    sim = commands.add_parser("sim", help="the simulated dual-arm robot")
    sims = sim.add_subparsers(dest="sim", required=True, metavar="SIM")
    rec = sims.add_parser("record", help="record scripted-expert episodes into rosbag2, one bag per episode",
                          description="Runs the task's expert through the robot's channels (joint states, arm "
                          "commands, three cameras with CameraInfo) and writes one rosbag2 per episode.")
    rec.add_argument("--task", required=True, help="task name (lift, handover, transport)")
    rec.add_argument("--episodes", type=_positive_int, required=True)
    rec.add_argument("--out", type=Path, required=True, help="folder for the bags")
    rec.add_argument("--seed", type=int, default=0, help="first seed; episode k uses seed + k")
    rec.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    rec.add_argument("--distro", choices=("humble", "jazzy"), default="humble")
    rec.add_argument("--image-size", type=_image_size, default=(240, 320), help="HEIGHTxWIDTH of recorded images")
    rec.add_argument("--no-images", action="store_true", help="no cameras (state-only episodes, no rendering)")
    rec.add_argument("--compress", action="store_true", help="rosbag2 per-message zstd compression")
    rec.add_argument("--keep-failures", action="store_true", help="also keep failed episodes (suffix _failed)")
    rec.add_argument("--execution-noise", type=_non_negative_float, default=0.0, metavar="STD",
                     help="radians: the arms execute the expert's targets plus a drifting offset of this std per "
                          "joint (time constant 0.5 s) while the bags record the clean targets, so the "
                          "demonstrations show recoveries (DART); default 0")
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(func=_sim_record)
    check = sims.add_parser("experts", help="success rate of the scripted experts per task and strategy",
                            description="Runs each task's expert on consecutive seeds (no rendering, nothing "
                            "written) and prints successes per strategy.")
    check.add_argument("--task", default="all", help="task name, or all")
    check.add_argument("--episodes", type=_positive_int, default=50)
    check.add_argument("--seed", type=int, default=0, help="first seed")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(func=_sim_experts)
    mw = sims.add_parser("metaworld", help="Meta-World's scripted experts (optional extra): success, and a dataset",
                         description="Runs Meta-World's own scripted policies (state observations) on consecutive "
                         "seeds, prints success per environment, and with --out writes the successful episodes as "
                         "a dataset for `dbp train`. Needs: pip install 'dbp_control[metaworld]'.")
    mw.add_argument("--env", action="append", required=True, help="environment, e.g. reach-v3 (repeatable), or all")
    mw.add_argument("--episodes", type=_positive_int, default=50, help="episodes per environment")
    mw.add_argument("--seed", type=int, default=0, help="first seed")
    mw.add_argument("--out", type=Path, default=None, help="write a dataset of the successful episodes here")
    mw.add_argument("--quiet", action="store_true", help="no progress bar")
    mw.set_defaults(func=_sim_metaworld)
    robot = sims.add_parser("robot", help="the simulated robot as a node on the robot's topics (Zenoh)",
                            description="Publishes joint states, cameras and object poses and follows arm "
                            "commands on the robot's topics, as ROS 2 CDR over Zenoh; /sim/reset (a seed) starts "
                            "an episode, /sim/status reports it.")
    _add_node_options(robot, "config/sim_robot.yaml")
    robot.set_defaults(func=_sim_robot)

    from dbp_control.nodes import NODE_CLASSES

    node_cmd = commands.add_parser("node", help="run one node of the graph over Zenoh",
                                   description="Runs one node (its parameters from config/<name>.yaml unless --params) "
                                   "as a process on the robot's topics over Zenoh.")
    node_cmd.add_argument("executable", choices=sorted(NODE_CLASSES), help="which node")
    node_cmd.add_argument("--name", default=None, help="the node's name (default: the executable's), e.g. head_camera")
    _add_node_options(node_cmd, "config/<name>.yaml")
    node_cmd.set_defaults(func=_node)

    demo = commands.add_parser("demo", help="the simulated robot driven by the default policy through the graph",
                               description="Runs the simulated robot, the policy, the command node and the recorder "
                               "as processes over Zenoh for a few episodes; prints success, control rate and latency; "
                               "leaves one bag per episode and a plot.")
    demo.add_argument("--episodes", type=_positive_int, default=5)
    demo.add_argument("--seed", type=int, default=100_000, help="first episode's seed")
    demo.add_argument("--task", default="lift", help="the default policy is trained for lift")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"))
    demo.set_defaults(func=_demo)

    la = commands.add_parser("launch", help="start a mode of the node graph as processes over Zenoh",
                             description="Starts the nodes config/graph.yaml lists for MODE, each as a process with "
                             "its parameter files, around a Zenoh router; Ctrl-C stops them all.")
    la.add_argument("mode", help="a mode of config/graph.yaml, e.g. sim")
    la.add_argument("--set", action="append", default=[], metavar="NODE.NAME=VALUE", help="override a parameter")
    la.add_argument("--endpoint", default="tcp/127.0.0.1:7447", help="where the router listens")
    la.add_argument("--distro", choices=("humble", "jazzy"), default="humble")
    la.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    la.set_defaults(func=_launch)

    bag_cmd = commands.add_parser("bag", help="rosbag2 helpers")
    bags = bag_cmd.add_subparsers(dest="bag", required=True, metavar="BAG")
    rc = bags.add_parser("recover", help="recover an MCAP bag whose writer was killed (no footer, no metadata.yaml)",
                         description="Reads the complete records of a killed recording and writes them into a new, "
                         "readable bag; the damaged one is left as it is.")
    rc.add_argument("damaged", type=Path, help="the bag folder (or its .mcap file)")
    rc.add_argument("out", type=Path, help="the new bag folder")
    rc.add_argument("--distro", choices=("humble", "jazzy"), default="humble")
    rc.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    rc.add_argument("--compress", action="store_true", help="per-message zstd in the new bag")
    rc.set_defaults(func=_bag_recover)

    zenoh_cmd = commands.add_parser("zenoh", help="Zenoh helpers")
    zenohs = zenoh_cmd.add_subparsers(dest="zenoh", required=True, metavar="ZENOH")
    router = zenohs.add_parser("router", help="run the Zenoh router the nodes meet at")
    router.add_argument("--endpoint", default="tcp/127.0.0.1:7447")
    router.set_defaults(func=_zenoh_router)

    from dbp_control.core.policies import available_methods
    from dbp_control.core.policies.nets.unet1d import UNET_PRESETS
    from dbp_control.core.training.recipe import OBSERVATIONS, TrainRecipe

    t = TrainRecipe()
    tr = commands.add_parser("train", help="train a policy on a compiled dataset",
                             description="Trains DBP, Diffusion Policy (DDPM) or BC with the same U-Net on a dataset "
                             "from `dbp dataset build`, with a progress bar (loss and drift-force diagnostics), "
                             "checkpoints (config, normaliser statistics, EMA weights, dataset layout) that resume, "
                             "metrics.jsonl and loss.png.")
    tr.add_argument("dataset", type=Path)
    tr.add_argument("--method", choices=available_methods(), default=t.method)
    tr.add_argument("--obs", choices=OBSERVATIONS, default=t.obs,
                    help="state: joints (+ object poses if the dataset has them); image: joints + cameras")
    tr.add_argument("--preset", choices=sorted(UNET_PRESETS), default=t.preset, help="U-Net widths preset")
    tr.add_argument("--down-dims", type=_dims, default=None, help="U-Net widths, overriding the preset")
    tr.add_argument("--horizon", type=_positive_int, default=t.horizon, help="chunk length in steps")
    tr.add_argument("--n-obs-steps", type=_positive_int, default=t.n_obs_steps)
    tr.add_argument("--n-action-steps", type=_positive_int, default=t.n_action_steps, help="steps executed per chunk")
    tr.add_argument("--steps", type=_positive_int, default=t.steps)
    tr.add_argument("--batch-size", type=_positive_int, default=t.batch_size)
    tr.add_argument("--lr", type=_positive_float, default=t.lr)
    tr.add_argument("--ema-decay", type=float, default=t.ema_max_decay)
    tr.add_argument("--seed", type=int, default=t.seed)
    tr.add_argument("--num-generated", type=_positive_int, default=t.num_generated,
                    help="DBP: samples drawn per observation to build the drift field (G)")
    tr.add_argument("--temperatures", type=_temperatures, default=t.temperatures,
                    help="DBP: kernel temperatures of the drift field, comma-separated (default: "
                    f"{_listed(t.temperatures)})")
    tr.add_argument("--neighbour-positives", type=_non_negative_int, default=t.neighbour_positives, metavar="K",
                    help="DBP: the action chunks of the K nearest observations of other demonstrations join each "
                    "window's own as positives of the drift field (0: its own only)")
    tr.add_argument("--noise-skip", type=_non_negative_float, default=t.noise_skip, metavar="C",
                    help="DBP: the generator outputs C * z + U-Net(z, obs), so its samples start spread instead of "
                    "collapsed onto one point (0: U-Net(z, obs))")
    tr.add_argument("--noise-skip-fade", type=_non_negative_int, default=t.noise_skip_fade_steps, metavar="N",
                    help="DBP: C falls linearly to 0 over the first N training steps, so the trained generator "
                    "is U-Net(z, obs) alone (0: C stays)")
    tr.add_argument("--zero-noise-weight", type=_non_negative_float, default=t.zero_noise_weight, metavar="W",
                    help="DBP: adds W times the squared distance from f(0, obs), the chunk deployed at noise scale 0, "
                    "to the nearest of the observation's samples, so that chunk is one the learned distribution "
                    "draws (0: z = 0 is not trained; default: %(default)g)")
    tr.add_argument("--state-noise", type=_non_negative_float, default=t.state_noise, metavar="STD",
                    help="std of a random offset added to each training window's observed state, in normalised "
                    "units (each feature's range is [-1, 1]); the same offset at every observation step")
    tr.add_argument("--object-noise", type=_non_negative_float, default=t.object_noise, metavar="STD",
                    help="the offsets' std on the object poses instead (state observations; default: --state-noise), "
                    "e.g. --state-noise 0 --object-noise 0.1 offsets only where the objects lie")
    tr.add_argument("--out", type=Path, default=None, help="output folder (default outputs/train/<dataset>_<method>_<obs>)")
    tr.add_argument("--fresh", action="store_true", help="start over instead of resuming a checkpoint in --out")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)

    ev = commands.add_parser("eval", help="closed-loop success rate in the simulation",
                             description="Runs the policy (a checkpoint with torch, or an exported folder with ONNX "
                             "Runtime) closed loop on the simulated task: receding horizon, n_action_steps of each "
                             "chunk executed; prints the success rate with a 95% Wilson interval and writes an image "
                             "strip of the first episodes.")
    ev.add_argument("policy", type=Path, help="checkpoint.pt from dbp train, or a folder from dbp export")
    ev.add_argument("--task", required=True, help="lift, handover or transport")
    ev.add_argument("--episodes", type=_positive_int, default=20)
    ev.add_argument("--seed", type=int, default=100_000, help="first seed (away from the demonstrations' seeds)")
    ev.add_argument("--strip", type=int, default=4, help="episodes shown in the image strip (0: none)")
    ev.add_argument("--out", type=Path, default=Path("outputs") / "eval", help="folder for the image strip")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--head-precision", choices=("float32", "int8"), default="float32",
                    help="an exported policy's head: float32, or INT8 as `dbp export --int8-head` writes it")
    ev.add_argument("--noise-scale", type=_non_negative_float, default=1.0, metavar="S",
                    help="standard deviation of the sampling noise (z, and DDPM's per-step noise): 1 samples the "
                    "learned distribution, 0 gives one deterministic chunk per observation")
    ev.set_defaults(func=_eval)

    ex = commands.add_parser("export", help="export a checkpoint to ONNX (+ policy.yaml) for the inference engine",
                             description="Writes encoder_<camera>.onnx, head.onnx and (with cameras) policy.onnx, with "
                             "normalisation inside, and policy.yaml (cameras, joint layout, horizon, rates, "
                             "normaliser, source checkpoint hash, graph hashes).")
    ex.add_argument("checkpoint", type=Path)
    ex.add_argument("--out", type=Path, default=None, help="output folder (default models/<training folder name>)")
    ex.add_argument("--sampler", choices=("ddpm", "ddim"), default=None, help="diffusion only: the sampler to export")
    ex.add_argument("--inference-steps", type=_positive_int, default=None, help="diffusion only: sampler steps")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")
    ex.add_argument("--int8-encoders", action="store_true",
                    help="also write INT8 image encoders for CPU robots (policy node: encoder_precision: int8), "
                    "calibrated on training frames; their output error is printed and kept in policy.yaml")
    ex.add_argument("--int8-head", action="store_true",
                    help="also write an INT8 head for CPU robots (policy node: head_precision: int8): its "
                    "convolutions of 128 channels and more and its FiLM layer quantised; its output error is printed and kept in policy.yaml "
                    "(one-step policies: a diffusion head's steps run in an ONNX Loop, which the quantiser leaves float)")
    ex.add_argument("--calibration", type=Path, default=None,
                    help="dataset whose frames calibrate the INT8 encoders (default: the one the policy was trained on)")
    ex.set_defaults(func=_export)

    from dbp_control.core.data.dataset import BuildConfig

    dataset = commands.add_parser("dataset", help="training datasets compiled from episode bags")
    datasets = dataset.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    build = datasets.add_parser(
        "build", help="compile rosbag2 episodes into a zarr training dataset",
        description="Replays each bag as the observation node would (cameras and joint states matched by "
        "ApproximateTimeSync, a step every 1/rate seconds), resizes images and writes a chunked, compressed zarr "
        "dataset with episode boundaries, a train/val split and statistics. Damaged or failed episodes are "
        "reported and skipped; bags are only read.")
    b = BuildConfig()
    build.add_argument("paths", nargs="+", type=Path, metavar="BAGS... OUT",
                       help="bag folders or folders of bags, then the dataset folder to create (e.g. data/lift.zarr)")
    build.add_argument("--cameras", type=_cameras, default=b.cameras,
                       help="comma-separated cameras, or none for a state-only dataset (default: all three)")
    build.add_argument("--image-size", type=_image_size, default=b.image_size, help="HEIGHTxWIDTH of stored images")
    build.add_argument("--rate", type=float, default=b.rate_hz, help="steps per second (the action chunk's step)")
    build.add_argument("--objects", action="store_true", help="include the simulator's object poses (state policies)")
    build.add_argument("--queue-size", type=_positive_int, default=b.queue_size, help="synchroniser queue per input")
    build.add_argument("--slop", type=float, default=b.slop_s, help="synchroniser slop in seconds")
    build.add_argument("--val-fraction", type=float, default=b.val_fraction, help="episodes held out for validation")
    build.add_argument("--seed", type=int, default=b.seed, help="seed of the train/val split")
    build.add_argument("--include-failures", action="store_true", help="keep episodes whose task failed")
    build.add_argument("--distro", choices=("humble", "jazzy"), default=b.distro, help="typestore of the bags")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_dataset_build)
    info = datasets.add_parser("info", help="describe a dataset; --bench measures its read throughput")
    info.add_argument("dataset", type=Path)
    info.add_argument("--bench", action="store_true", help="time loading and random training batches")
    info.add_argument("--batch-size", type=_positive_int, default=64)
    info.set_defaults(func=_dataset_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: a stuck node's stacks, to stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "bench", None) == "policy" and args.task is None:
        args.task = ["lift"]
    if getattr(args, "dataset", None) == "build":
        if len(args.paths) < 2:
            parser.error("dataset build needs at least one bag and the output folder: BAGS... OUT")
        args.bags, args.out = args.paths[:-1], args.paths[-1]
    try:
        return args.func(args)
    # bad input: a message, no traceback (DatasetError is a ValueError)
    except (ValueError, KeyError, CheckpointError, BagError, PortError, FloatingPointError, OSError,
            ImportError, CameraError) as exc:  # EngineError, ExportError and DatasetError are ValueErrors
        print(f"dbp {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
