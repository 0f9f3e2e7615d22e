"""`dbp bench engine`: exported policies through the inference engine on the providers this machine has.

Per policy folder it prints which provider the engine's sessions got (a GPU build of ONNX Runtime falls
back to the CPU when a library is missing), how far its chunks are from ONNX Runtime's CPU provider on
the same random inputs (the CPU graphs match torch within 1e-4, see the export tests), and the latency,
median and p99, of the head alone (the control rate), of one camera's encoder (once per frame) and of a
whole chunk from raw frames (every camera encoded, then the head). This is the check to run on a robot
computer after installing onnxruntime-gpu, and the figures to compare GPU and CPU by. It imports no
torch, so it runs where only the engine's dependencies are installed; `timing_exports` (torch, and the
training stack) writes the policies the README's GPU and CPU tables were measured on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dbp_control.core.inference.engine import CPU, PolicyEngine


@dataclass(frozen=True)
class EngineBenchConfig:
    model_dirs: tuple[Path, ...]
    providers: tuple[str, ...] = ()  # asked for by name, in order; empty: the engine's (TensorRT, CUDA, CPU)
    calls: int = 1000
    threads: int = 2  # the head's intra-op threads, as the policy node runs it
    parity_inputs: int = 16
    progress: bool = True


@dataclass(frozen=True)
class Latency:
    p50: float  # milliseconds
    p99: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        return cls(float(np.percentile(samples, 50)), float(np.percentile(samples, 99)))


@dataclass(frozen=True)
class EngineBenchRow:
    model: str
    sampler: str  # "DBP" or e.g. "DDPM-100": the method and its function evaluations per chunk
    cameras: int
    providers: list[str]  # what the head's session got
    max_abs_diff: float | None  # largest |chunk - CPU chunk| over the parity inputs; None when run on the CPU
    head: Latency
    encoder: Latency | None  # the first camera's; None for a state-only policy
    chunk: Latency


def timed_calls(fn: Callable[[], Any], calls: int, *, warmup: int | None = None) -> list[float]:
    """Milliseconds per call of `fn` over `calls` calls, after `warmup` calls (default: a twentieth, at least
    5) right before them: a graph's first calls after another graph ran are several times slower (its
    weights are out of the cache), and ten of them were the p99 of a thousand calls."""
    for _ in range(max(5, calls // 20) if warmup is None else warmup):
        fn()
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


TIMING_CAMERAS = ("left_wrist", "right_wrist", "head")


def timing_exports(out_dir: Path, *, preset: str = "small", progress: bool = True) -> list[Path]:
    """The bench's backbone (`preset`) as state DBP, DDIM-10 and DDPM-100 (one diffusion checkpoint) and
    as a three-camera 96x96 image DBP, each trained 2 steps on a synthetic dataset and exported to a folder
    of `out_dir`: the policies a GPU is timed on where no trained ones are at hand (a graph's cost does not
    depend on its weights' values). Made afresh each call: a folder holding anything else is refused."""
    import shutil

    from dbp_control.core.data.synthetic import synthetic_dataset
    from dbp_control.core.export.onnx_export import export_policy
    from dbp_control.core.training.recipe import TrainRecipe, train_on_dataset

    exports = [("state_dbp", "dbp", "state", None, None), ("state_ddim10", "diffusion", "state", "ddim", 10),
               ("state_ddpm100", "diffusion", "state", "ddpm", 100), ("image_dbp", "dbp", "image", None, None)]
    ours = {"state.zarr", "image.zarr", *(f"train_{method}_{obs}" for _, method, obs, *_ in exports),
            *(name for name, *_ in exports)}
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
        if foreign:
            raise ValueError(f"{out_dir} holds {foreign}, which timing exports did not write: choose another folder")
        shutil.rmtree(out_dir)
    datasets = {"state": synthetic_dataset(out_dir / "state.zarr", steps=40),
                "image": synthetic_dataset(out_dir / "image.zarr", cameras=TIMING_CAMERAS, objects=False,
                                           steps=40, image_size=(96, 96))}
    for name, method, obs, sampler, steps in exports:
        training = out_dir / f"train_{method}_{obs}"
        if not training.exists():  # DDIM-10 and DDPM-100 share one diffusion checkpoint
            train_on_dataset(datasets[obs], TrainRecipe(method=method, obs=obs, preset=preset, steps=2, batch_size=8),
                             training, progress=progress)
        export_policy(training / "checkpoint.pt", out_dir / name, sampler=sampler, inference_steps=steps)
    return [out_dir / name for name, *_ in exports]


def _sampler_label(sidecar: dict[str, Any]) -> str:
    return "DBP" if sidecar["method"] == "dbp" else f"{str(sidecar['sampler']).upper()}-{sidecar['nfe']}"


def _random_inputs(engine: PolicyEngine, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    state = rng.normal(size=(engine.n_obs_steps, engine.state_dim)).astype(np.float32)
    images = {cam: rng.integers(0, 256, (engine.n_obs_steps, *engine.image_size(cam), 3), dtype=np.uint8)
              for cam in engine.cameras}
    return state, images


def bench_model(model_dir: Path, cfg: EngineBenchConfig) -> EngineBenchRow:
    engine = PolicyEngine(model_dir, providers=cfg.providers or None, threads=cfg.threads)
    rng = np.random.default_rng(0)
    max_abs_diff = None
    if engine.providers[0] != CPU:
        reference = PolicyEngine(model_dir, providers=[CPU], threads=cfg.threads)
        diffs = []
        for _ in range(cfg.parity_inputs):
            state, images = _random_inputs(engine, rng)
            noise = engine.noise()
            diffs.append(np.abs(engine.predict(state, images, noise) - reference.predict(state, images, noise)).max())
        max_abs_diff = float(max(diffs))
    state, images = _random_inputs(engine, rng)
    noise = engine.noise()
    features = {cam: np.stack([engine.encode(cam, frame) for frame in images[cam]]) for cam in engine.cameras}
    head = Latency.of(timed_calls(lambda: engine.act(state, features, noise), cfg.calls))
    encoder = None
    if engine.cameras:
        first = engine.cameras[0]
        encoder = Latency.of(timed_calls(lambda: engine.encode(first, images[first][-1]), cfg.calls))
    # a chunk from raw frames: at run time only the newest frame of each camera is new, but this is the
    # cost when none was encoded ahead (the policy node's first chunk, or a node without a feature cache)
    chunk = Latency.of(timed_calls(lambda: engine.predict(state, images, noise), cfg.calls))
    return EngineBenchRow(model=str(model_dir), sampler=_sampler_label(engine.sidecar), cameras=len(engine.cameras),
                          providers=list(engine.providers), max_abs_diff=max_abs_diff, head=head, encoder=encoder,
                          chunk=chunk)


def run_engine_benchmark(cfg: EngineBenchConfig) -> list[EngineBenchRow]:
    from tqdm.auto import tqdm

    return [bench_model(Path(model_dir), cfg) for model_dir in tqdm(cfg.model_dirs, desc="policies",
                                                                   disable=not cfg.progress, leave=False)]


def format_engine_table(rows: Sequence[EngineBenchRow], cfg: EngineBenchConfig) -> str:
    import onnxruntime as ort

    def ms(latency: Latency | None) -> str:
        return "-" if latency is None else f"{latency.p50:.3f} / {latency.p99:.3f}"

    header = ("policy", "sampler", "cameras", "provider", "max |diff| vs CPU", "head ms p50 / p99",
              "encoder ms p50 / p99", "chunk ms p50 / p99")
    lines = [[Path(r.model).name, r.sampler, str(r.cameras), r.providers[0].removesuffix("ExecutionProvider"),
              "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}", ms(r.head), ms(r.encoder), ms(r.chunk)]
             for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [f"ONNX Runtime {ort.__version__}, available providers: {', '.join(ort.get_available_providers())}; "
           f"{cfg.calls} calls each, head on {cfg.threads} thread(s)",
           "  ".join(h.ljust(w) for h, w in zip(header, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
    state_only = [r for r in rows if r.cameras == 0]
    dbp = [r for r in state_only if r.sampler == "DBP"]
    if dbp and len(state_only) > len(dbp):  # the last DBP listed: with --synthetic, the samplers' own backbone
        out.append("state-only chunk p50 relative to DBP: " + ", ".join(
            f"{r.sampler} {r.chunk.p50 / dbp[-1].chunk.p50:.1f}x" for r in state_only if r.sampler != "DBP"))
    return "\n".join(out)
