"""The engine's providers: what it asks ONNX Runtime for, what it reports, and `dbp bench engine`. The GPU
tests run where onnxruntime-gpu finds CUDA (they skip elsewhere; the CPU parity with torch is tested in
test_train_export_engine.py)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from dbp_control.core.benchmarks.engine import EngineBenchConfig, format_engine_table, run_engine_benchmark
from dbp_control.core.inference.engine import EngineError, PolicyEngine

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "lift_dbp_state"
CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
needs_cuda = pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="no CUDA build of ONNX Runtime")


def test_the_engine_loads_without_torch():
    """The robot's runtime: the engine and its benchmark import neither torch nor the training data stack."""
    code = ("import sys, dbp_control.core.benchmarks.engine; "
            "print(sorted(m for m in ('torch', 'zarr', 'mujoco', 'rosbags') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class ReportingSession:
    """A CPU session that reports the providers ONNX Runtime would have given: how a GPU build's fallbacks
    look on a machine without a GPU."""

    def __init__(self, session, providers):
        self._session, self._providers = session, providers

    def get_providers(self):
        return self._providers

    def __getattr__(self, name):
        return getattr(self._session, name)


@pytest.fixture
def gpu_build(monkeypatch):
    """ONNX Runtime as onnxruntime-gpu behaves on a machine with CUDA but without TensorRT's libraries:
    TensorRT is listed, fails to load, and the retry runs on CUDA without the options asked for. Returns
    the provider lists the engine asked for, in order."""
    real_session = ort.InferenceSession
    asked = []

    def session(path, options, providers):
        asked.append(providers)
        got = {TRT: [CUDA, CPU], CUDA: [CUDA, CPU]}.get(providers[0][0], [CPU])
        return ReportingSession(real_session(path, options, providers=[CPU]), got)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", session)
    return asked


def test_the_default_order_tries_one_provider_at_a_time_and_keeps_its_options(gpu_build):
    """Asked for TensorRT, CUDA and CPU at once, ONNX Runtime's own retry would run CUDA without
    `use_tf32=0`: TF32 products put the H200's chunks 8.5e-4 away from the CPU's (1e-6 without)."""
    engine = PolicyEngine(SHIPPED, warmup=0)
    assert gpu_build == [[(TRT, {}), (CPU, {})], [(CUDA, {"use_tf32": "0"}), (CPU, {})]]
    assert engine.providers == [CUDA, CPU] and engine.on_gpu and engine.io_binding
    assert engine.act(np.zeros((engine.n_obs_steps, engine.state_dim), np.float32)).shape == (
        engine.horizon, engine.action_dim)


def test_a_provider_asked_for_by_name_must_be_the_one_the_session_gets(gpu_build):
    """Asked for TensorRT by name, the engine refuses the CUDA session ONNX Runtime falls back to."""
    with pytest.raises(EngineError, match=r"asked for TensorrtExecutionProvider, ONNX Runtime gave "
                                          r"\['CUDAExecutionProvider', 'CPUExecutionProvider'\]"):
        PolicyEngine(SHIPPED, providers=[TRT, CUDA, CPU])
    assert PolicyEngine(SHIPPED, providers=[CUDA, CPU], warmup=0).providers[0] == CUDA


def test_the_default_order_ends_on_the_cpu_when_no_gpu_provider_loads(monkeypatch):
    real_session = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", lambda path, options, providers: ReportingSession(
        real_session(path, options, providers=[CPU]), [CPU]))
    assert PolicyEngine(SHIPPED, warmup=0).providers == [CPU]
    with pytest.raises(EngineError, match=r"asked for CUDAExecutionProvider, ONNX Runtime gave \['CPUExecutionProvider'\]"):
        PolicyEngine(SHIPPED, providers=[CUDA])


def test_a_provider_this_build_lacks_is_refused_by_name():
    with pytest.raises(EngineError, match=r"provider\(s\) \['NoSuchExecutionProvider'\] are not available"):
        PolicyEngine(SHIPPED, providers=["NoSuchExecutionProvider"])


def test_bench_engine_reports_the_provider_and_latencies():
    cfg = EngineBenchConfig(model_dirs=(SHIPPED,), providers=(CPU,), calls=20, progress=False)
    (row,) = run_engine_benchmark(cfg)
    assert row.providers == [CPU] and row.max_abs_diff is None  # nothing to compare with
    assert row.sampler == "DBP" and row.cameras == 0 and row.encoder is None
    assert 0 < row.head.p50 <= row.head.p99 and 0 < row.chunk.p50 <= row.chunk.p99
    table = format_engine_table([row], cfg)
    assert "lift_dbp_state  DBP" in table and f"ONNX Runtime {ort.__version__}" in table


@needs_cuda
def test_on_cuda_the_engine_matches_the_cpu_and_binds_its_inputs():
    engine = PolicyEngine(SHIPPED, providers=[CUDA, "CPUExecutionProvider"])
    cpu = PolicyEngine(SHIPPED, providers=["CPUExecutionProvider"])
    assert engine.providers[0] == CUDA and engine.on_gpu and engine.io_binding
    rng = np.random.default_rng(0)
    for _ in range(8):
        state = rng.normal(size=(engine.n_obs_steps, engine.state_dim)).astype(np.float32)
        noise = engine.noise()
        assert np.abs(engine.predict(state, None, noise) - cpu.predict(state, None, noise)).max() < 1e-4


@needs_cuda
def test_bench_engine_on_cuda_stays_within_the_parity_bound():
    cfg = EngineBenchConfig(model_dirs=(SHIPPED,), providers=(CUDA,), calls=50, progress=False)
    (row,) = run_engine_benchmark(cfg)
    assert row.providers[0] == CUDA and row.max_abs_diff is not None and row.max_abs_diff < 1e-4


def test_bench_engine_times_the_synthetic_exports_and_keeps_foreign_folders(tmp_path):
    cli = [sys.executable, "-m", "dbp_control.cli.main", "bench", "engine", "--calls", "3", "--quiet"]
    done = subprocess.run([*cli, "--synthetic", str(tmp_path / "t")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[3:] if line.startswith(("state_", "image_"))}
    assert {name: row[1:4] for name, row in rows.items()} == {
        "state_dbp": ["DBP", "0", "CPU"], "state_ddim10": ["DDIM-10", "0", "CPU"],
        "state_ddpm100": ["DDPM-100", "0", "CPU"], "image_dbp": ["DBP", "3", "CPU"]}
    assert "state-only chunk p50 relative to DBP: DDIM-10" in done.stdout
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    refused = subprocess.run([*cli, "--synthetic", str(tmp_path / "mine")], capture_output=True, text=True)
    assert refused.returncode == 2 and "holds ['notes.txt'], which timing exports did not write" in refused.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    nothing = subprocess.run(cli, capture_output=True, text=True)
    assert nothing.returncode == 2 and "no policy to time" in nothing.stderr
