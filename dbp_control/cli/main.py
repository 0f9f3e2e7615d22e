"""`dbp`: the command line of dbp_control. Each subcommand is a thin wrapper over the core."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dbp_control.core.benchmarks.multimodal import MultimodalBenchConfig, format_table, run_multimodal_benchmark
from dbp_control.core.training.checkpoint import CheckpointError


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, CheckpointError, FloatingPointError, OSError) as exc:  # bad input: message, no traceback
        print(f"dbp {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
