"""The inference engine: an exported policy (ONNX graphs + policy.yaml) run with ONNX Runtime.

Providers are tried in the order TensorRT, CUDA, CPU, one at a time, and the one the sessions got is
reported (onnxruntime-gpu falls back on its own when a provider's libraries are missing, and drops the
provider's options as it does); a provider asked for by name must be the one they get. Thread counts are fixed
(no pool busy-waits between calls), the thread that calls the head can be pinned to a CPU of its own
(`dbp_control.core.inference.cpus`, as the policy node does), the sessions are warmed up, and the
sidecar is checked against the live robot configuration before anything runs. Image features are
computed per camera frame (`encode`) and reused by the head, which runs at the control rate (`act`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dbp_control.core.export.sidecar import SIDECAR, SIDECAR_FORMAT, SIDECAR_VERSION, sha256_file
from dbp_control.core.noise import check_noise_scale
from dbp_control.core.yaml_files import load_mapping

CPU = "CPUExecutionProvider"
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", CPU)
# float32 as exported: CUDA's default TF32 matrix products round inputs to 10 bits, off torch by more than 1e-4
PROVIDER_OPTIONS: dict[str, dict[str, str]] = {"CUDAExecutionProvider": {"use_tf32": "0"}}
PRECISIONS = {"float32": "", "int8": "_int8"}  # -> the suffix of the graphs' names


class EngineError(ValueError):
    """An exported policy that cannot be loaded or does not fit the configured robot."""


@dataclass(frozen=True)
class LiveConfig:
    """What the running robot provides: the engine refuses a policy made for something else."""

    cameras: Mapping[str, tuple[int, int]]  # camera -> (height, width) the observation node delivers
    joint_names: Sequence[str]  # the action's joints, in command order
    state_keys: Sequence[str] = ("joints",)


def load_sidecar(model_dir: Path) -> dict[str, Any]:
    model_dir = Path(model_dir)
    path = model_dir / SIDECAR
    sidecar = load_mapping(path, EngineError,
                           f"no exported policy in {model_dir}: {SIDECAR} is missing (run `dbp export`)")
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise EngineError(f"{path} is not a {SIDECAR_FORMAT} sidecar")
    version = sidecar.get("format_version")
    if version != SIDECAR_VERSION and not (version == 1 and not sidecar.get("cameras")):  # state-only: 1 == 2
        raise EngineError(f"{path} has format version {version}; this engine reads {SIDECAR_VERSION}"
                          + (" (re-export the checkpoint with `dbp export`)" if version == 1 else ""))
    for name, graph in sidecar["graphs"].items():
        file = model_dir / graph["file"]
        if not file.is_file():
            raise EngineError(f"{model_dir}: graph {name!r} ({graph['file']}) is missing")
        if sha256_file(file) != graph["sha256"]:
            raise EngineError(f"{file} does not match its recorded sha256: the file is corrupt, truncated or replaced")
    return sidecar


def check_live_config(sidecar: dict[str, Any], live: LiveConfig) -> None:
    """Every difference between what the policy was trained on and what the robot provides, at once."""
    problems = []
    wanted = {cam: (spec["height"], spec["width"]) for cam, spec in sidecar["cameras"].items()}
    for cam, size in wanted.items():
        if cam not in live.cameras:
            problems.append(f"camera {cam!r} is not configured")
        elif tuple(live.cameras[cam]) != size:
            problems.append(f"camera {cam!r} delivers {tuple(live.cameras[cam])}, the policy expects {size}")
    if list(live.joint_names) != list(sidecar["action"]["names"]):
        problems.append(f"joints {list(live.joint_names)} differ from the policy's {sidecar['action']['names']}")
    if list(live.state_keys) != list(sidecar["state"]["keys"]):
        problems.append(f"state keys {list(live.state_keys)} differ from the policy's {sidecar['state']['keys']}")
    if problems:
        raise EngineError("the exported policy does not fit this robot: " + "; ".join(problems))


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise EngineError(f"ONNX Runtime provider(s) {missing} are not available; available: {available}")
        return list(requested)
    return [p for p in PREFERRED_PROVIDERS if p in available]


def session_options(intra_threads: int, *, spinning: bool) -> Any:
    """ONNX Runtime session options as the engine runs its graphs: `intra_threads` threads, which spin
    between calls only with `spinning` (a spinning pool keeps its cores busy while idle)."""
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = intra_threads, 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.log_severity_level = 3
    o.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return o


class PolicyEngine:
    def __init__(self, model_dir: Path, *, live: LiveConfig | None = None, providers: Sequence[str] | None = None,
                 threads: int = 2, warmup: int = 5, io_binding: bool | None = None,
                 encoder_precision: str = "float32", head_precision: str = "float32",
                 noise_scale: float = 1.0) -> None:
        """`io_binding`: bind the head's inputs and output explicitly (default: on a GPU provider, where it
        saves ONNX Runtime's own staging copies; on the CPU plain `run` is already zero-copy).
        `encoder_precision`, `head_precision`: float32, or int8 for the quantised graphs that `dbp export
        --int8-encoders` and `--int8-head` write. `noise_scale`: the standard deviation of the noise `noise`
        draws (1: the learned distribution; 0: z = 0, one deterministic chunk per observation)."""
        import onnxruntime as ort

        try:
            self.noise_scale = check_noise_scale(noise_scale)
        except ValueError as exc:
            raise EngineError(str(exc)) from None

        self.model_dir = Path(model_dir)
        self.sidecar = load_sidecar(self.model_dir)
        if live is not None:
            check_live_config(self.sidecar, live)
        for name, precision in (("encoder_precision", encoder_precision), ("head_precision", head_precision)):
            if precision not in PRECISIONS:
                raise EngineError(f"{name} must be one of {list(PRECISIONS)}, got {precision!r}")
        graphs = {"head": f"head{PRECISIONS[head_precision]}",
                  **{f"encoder_{cam}": f"encoder_{cam}{PRECISIONS[encoder_precision]}" for cam in self.sidecar["cameras"]}}
        missing = sorted(file for file in graphs.values() if file not in self.sidecar["graphs"])
        if missing:
            flags = [flag for flag, wanted in (("--int8-head", head_precision == "int8"),
                                               ("--int8-encoders", encoder_precision == "int8")) if wanted]
            raise EngineError(f"{self.model_dir} has no graph(s) {missing}"
                              + (f" (export with {' '.join(flags)})" if flags else ""))
        self.encoder_precision, self.head_precision = encoder_precision, head_precision

        # the head runs at the control rate with `threads` threads, the encoders once per camera frame beside
        # it on one thread; no pool busy-waits between calls, so the two never burn each other's cores
        head_options, encoder_options = session_options(threads, spinning=False), session_options(1, spinning=False)
        # the default order tries one provider at a time, with the CPU behind it, so each keeps its options:
        # ONNX Runtime's own fallback (TensorRT listed but libnvinfer missing) retries CUDA without them
        chains = [choose_providers(providers)] if providers else [[p, CPU] if p != CPU else [CPU]
                                                                  for p in choose_providers()]
        self.sessions: dict[str, Any] = {}
        for name, file in graphs.items():  # the fused policy graph is for other runtimes: the split pair runs here
            graph = self.sidecar["graphs"][file]
            for tried, chain in enumerate(chains):
                try:
                    session = ort.InferenceSession(str(self.model_dir / graph["file"]),
                                                   head_options if name == "head" else encoder_options,
                                                   providers=[(p, PROVIDER_OPTIONS.get(p, {})) for p in chain])
                except Exception as exc:  # onnxruntime raises its own exception types for invalid models
                    raise EngineError(f"ONNX Runtime cannot load {graph['file']}: {exc}") from exc
                got = session.get_providers()  # what it got, not what was asked
                if got[0] == chain[0]:
                    break
                if providers:  # asked for by name: a fallback would hide a missing library
                    raise EngineError(f"{graph['file']}: asked for {chain[0]}, ONNX Runtime gave {got} (are the "
                                      f"libraries that provider needs, such as CUDA, cuDNN or TensorRT, installed?)")
            self.sessions[name] = session
            chains = chains[tried:]  # the head goes first: the encoders start from the provider it got
        self.providers = self.sessions["head"].get_providers()
        self.io_binding = self.on_gpu if io_binding is None else io_binding
        self.cameras: tuple[str, ...] = tuple(self.sidecar["cameras"])
        s = self.sidecar
        self.horizon, self.n_obs_steps, self.action_dim = s["horizon"], s["n_obs_steps"], len(s["action"]["names"])
        self.n_action_steps, self.step_hz = s["n_action_steps"], s["step_hz"]
        self.state_keys: tuple[str, ...] = tuple(s["state"]["keys"])
        self.state_dim = len(s["state"]["names"])
        self.z_steps_shape = tuple(s["graphs"]["head"]["inputs"]["z_steps"]["shape"]) \
            if "z_steps" in s["graphs"]["head"]["inputs"] else None
        self._rng = np.random.default_rng(0)
        for _ in range(warmup):
            self.predict(np.zeros((self.n_obs_steps, self.state_dim), np.float32),
                         {cam: np.zeros((self.n_obs_steps, *self.image_size(cam), 3), np.uint8) for cam in self.cameras})

    def image_size(self, camera: str) -> tuple[int, int]:
        spec = self.sidecar["cameras"][camera]
        return spec["height"], spec["width"]

    @property
    def on_gpu(self) -> bool:
        return self.providers[0] != CPU

    def noise(self) -> dict[str, np.ndarray]:
        """Normal inputs for one chunk with standard deviation `noise_scale` (z, and z_steps for DDPM)."""
        out = {"z": self._rng.standard_normal((1, self.horizon, self.action_dim), dtype=np.float32)}
        if self.z_steps_shape is not None:
            out["z_steps"] = self._rng.standard_normal(self.z_steps_shape, dtype=np.float32)
        if self.noise_scale != 1.0:  # drawn all the same: the stream stays aligned across scales
            out = {name: value * np.float32(self.noise_scale) for name, value in out.items()}
        return out

    def encode(self, camera: str, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] from one camera -> the frame's encoding [To, W]: its FiLM term at each observation
        step it may occupy (see `dbp_control.core.export.film`)."""
        if image.dtype != np.uint8 or image.shape != (*self.image_size(camera), 3):
            raise EngineError(f"camera {camera!r}: expected uint8 {(*self.image_size(camera), 3)}, "
                              f"got {image.dtype} {image.shape}")
        return self.sessions[f"encoder_{camera}"].run(None, {"image": image[None]})[0][0]

    def act(self, state: np.ndarray, features: Mapping[str, np.ndarray] | None = None,
            noise: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """state [To, S] and per camera the `encode` outputs of the frames at the To steps, stacked
        [To, To, W] -> chunk [T, D] in robot units."""
        state = np.asarray(state, np.float32)
        if state.shape != (self.n_obs_steps, self.state_dim):
            raise EngineError(f"state must be [{self.n_obs_steps}, {self.state_dim}], got {state.shape}")
        if not np.isfinite(state).all():
            raise EngineError("state contains NaN or inf")
        feeds = {"state": state[None], **(noise or self.noise())}
        head_inputs = self.sidecar["graphs"]["head"]["inputs"]
        for cam in self.cameras:
            if cam not in (features or {}):
                raise EngineError(f"no features for camera {cam!r}; the policy needs {list(self.cameras)}")
            value = np.asarray(features[cam], np.float32)  # type: ignore[index]
            expected = (self.n_obs_steps, *head_inputs[f"condition_{cam}"]["shape"][1:])
            if value.shape != expected:
                raise EngineError(f"camera {cam!r}: features must be {list(expected)} (the encodings of the "
                                  f"frames at the {self.n_obs_steps} steps), got {list(value.shape)}")
            steps = np.arange(self.n_obs_steps)
            feeds[f"condition_{cam}"] = value[steps, steps][None]  # each frame's term for its own step
        head = self.sessions["head"]
        if not self.io_binding:
            return head.run(None, feeds)[0][0]
        binding = head.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        binding.bind_output("action")
        head.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0][0]

    def predict(self, state: np.ndarray, images: Mapping[str, np.ndarray] | None = None,
                noise: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """state [To, S] and images {camera: uint8 [To, H, W, 3]} -> chunk [T, D]."""
        features = {cam: np.stack([self.encode(cam, frame) for frame in (images or {})[cam]]) for cam in self.cameras}
        return self.act(state, features, noise)
