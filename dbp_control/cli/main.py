"""`dbp`: the command line of dbp_control. Each subcommand is a thin wrapper over the core."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dbp_control.core.benchmarks.multimodal import MultimodalBenchConfig, format_table, run_multimodal_benchmark
from dbp_control.core.paths import CONFIG_DIR
from dbp_control.core.data.bags import BagError
from dbp_control.core.training.checkpoint import CheckpointError
from dbp_control.middleware.port import PortError


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 32,64,128, got {text!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"U-Net widths must be positive, got {text!r}")
    return dims


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
        seed=args.seed,
        resume=not args.fresh,
        progress=not args.quiet,
    )
    result = run_multimodal_benchmark(cfg)
    print(format_table(result))
    print(f"\nplot: {cfg.out_dir / 'samples.png'}\nresults: {cfg.out_dir / 'results.json'}")
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

    from dbp_control.core.sim.record import record_episode
    from dbp_control.core.sim.robot import DualArmSim
    from dbp_control.core.sim.tasks import make_task

    task = make_task(args.task)
    sim = DualArmSim(image_size=args.image_size)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    start = time.perf_counter()
    bar = tqdm(range(args.seed, args.seed + args.episodes), desc=f"record {args.task}", disable=args.quiet)
    for seed in bar:
        episode = record_episode(sim, task, seed, args.out, storage=args.storage, distro=args.distro,
                                 compress=args.compress, keep_failure=args.keep_failures, images=not args.no_images)
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
    from dbp_control.nodes.runner import parse_overrides, run_node
    from dbp_control.nodes.sim_robot import NAME, SimRobot

    run_node(NAME, SimRobot, parameters_file=args.params, overrides=parse_overrides(args.set), endpoint=args.endpoint,
             distro=args.distro, duration_s=args.duration)
    return 0


def _zenoh_router(args: argparse.Namespace) -> int:
    import signal
    import threading

    from dbp_control.middleware.zenoh_backend import open_router

    router = open_router(args.endpoint)
    print(f"Zenoh router on {args.endpoint} (Ctrl-C stops it)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    router.close()
    return 0


def _add_node_options(parser: argparse.ArgumentParser, default_params: Path) -> None:
    from dbp_control.middleware.zenoh_backend import DEFAULT_ENDPOINT, ENDPOINT_ENV

    parser.add_argument("--params", type=Path, default=default_params, help="ROS 2 parameters YAML")
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
    mm.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (all methods)")
    mm.add_argument("--ema-decay", type=float, default=d.ema_max_decay, help="maximum EMA decay (all methods)")
    mm.add_argument("--train-demos", type=_positive_int, default=d.train_demos, help="expert demonstrations")
    mm.add_argument("--down-dims", type=_dims, default=d.down_dims, help="U-Net widths, e.g. 64,128,256")
    mm.add_argument("--eval-observations", type=_positive_int, default=d.eval_observations, help="test observations")
    mm.add_argument("--samples-per-observation", type=_positive_int, default=d.samples_per_observation,
                    help="samples per test observation")
    mm.add_argument("--seed", type=int, default=d.seed)
    mm.add_argument("--fresh", action="store_true", help="ignore checkpoints in --out and train from scratch")
    mm.add_argument("--quiet", action="store_true", help="no progress bars")
    mm.set_defaults(func=_bench_multimodal)

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
    _add_node_options(robot, CONFIG_DIR / "sim_robot.yaml")
    robot.set_defaults(func=_sim_robot)

    zenoh_cmd = commands.add_parser("zenoh", help="Zenoh helpers")
    zenohs = zenoh_cmd.add_subparsers(dest="zenoh", required=True, metavar="ZENOH")
    router = zenohs.add_parser("router", help="run the Zenoh router the nodes meet at")
    router.add_argument("--endpoint", default="tcp/127.0.0.1:7447")
    router.set_defaults(func=_zenoh_router)

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
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "dataset", None) == "build":
        if len(args.paths) < 2:
            parser.error("dataset build needs at least one bag and the output folder: BAGS... OUT")
        args.bags, args.out = args.paths[:-1], args.paths[-1]
    try:
        return args.func(args)
    # bad input: a message, no traceback (DatasetError is a ValueError)
    except (ValueError, KeyError, CheckpointError, BagError, PortError, FloatingPointError, OSError,
            ImportError) as exc:
        print(f"dbp {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
