"""torch policy -> ONNX graphs plus a sidecar (`policy.yaml`) that says what they expect.

Graphs, all batch 1 with fixed, named inputs; normalisation is inside them, so they take and give robot
units:
- `encoder_<camera>.onnx`: image uint8 [1, H, W, 3] (as the camera gives it) -> condition [1, To, W]: the
  frame's features already multiplied into the U-Net's FiLM layers, row s for the frame at observation
  step s (`dbp_control.core.export.film`: exact, and it keeps those weights out of the head)
- `head.onnx`: state [1, To, S], condition_<camera> [1, To, W] per camera (row s from the frame at step s),
  z [1, T, D] (the noise, an input so the caller controls sampling; DDPM also takes z_steps
  [K - 1, 1, T, D]) -> action [1, T, D]
- `policy.onnx`: the two in one (image_<camera> uint8 [1, To, H, W, 3] instead of conditions), for other
  runtimes; the engine runs the split pair so each camera frame is encoded once.
- optionally `encoder_<camera>_int8.onnx`: the encoder quantised to INT8 for CPU robots, with its
  measured output error in the sidecar (`dbp_control.core.export.quantize`).
Iterative samplers (DDIM, DDPM) run inside the head as an ONNX Loop over one traced step: one call gives
one chunk.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from dbp_control.core.data.dataset import Dataset, DatasetError
from dbp_control.core.export.film import factor_film, film_terms
from dbp_control.core.export.groupnorm import rewrite_group_norms
from dbp_control.core.export.matmul_conv import MIN_IN_CHANNELS, rewritable, rewrite_convolutions
from dbp_control.core.export.mish import rewrite_mish
from dbp_control.core.export.quantize import CALIBRATION_FRAMES, quantize_encoder, quantize_head
from dbp_control.core.export.sidecar import SIDECAR, SIDECAR_FORMAT, SIDECAR_VERSION, sha256_file
from dbp_control.core.fingerprint import source_fingerprint
from dbp_control.core.layout import ROBOT_JOINTS, SIDES
from dbp_control.core.policies import Policy
from dbp_control.core.policies.diffusion.modeling import DiffusionPolicy
from dbp_control.core.policies.diffusion.scheduler import denoise_step
from dbp_control.core.training.checkpoint import load_policy, read_checkpoint

OPSET = 17
HEAD_TEST_INPUTS = 16  # inputs on which an INT8 head's error against the float head is measured
SAMPLER_DOMAIN, SAMPLER_OP = "dbp_control", "SamplerLoop"  # the head's placeholder for the sampler while traced
SAMPLER_INPUTS = ("x", "cond", "offset", "table", "noise")  # SamplerLoop.forward's, in order


class ExportError(ValueError):
    """A checkpoint that cannot be exported as asked."""


@functools.cache
def exporter_fingerprint() -> str:
    """The fingerprint of the code that writes the graphs: the export package and the policies it traces.
    Two exports of one checkpoint with the same fingerprint are the same graphs; `dbp bench policy`
    re-exports when it changes, instead of timing graphs older code wrote."""
    return source_fingerprint(("export", "policies"))


class EncoderGraph(nn.Module):
    """One camera frame -> its FiLM term for each observation step the frame may occupy."""

    def __init__(self, policy: Policy, camera: str, projection: torch.Tensor) -> None:
        super().__init__()
        self.encoder = policy.encoder.image_encoders[camera]
        self.register_buffer("projection", projection)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return film_terms(self.encoder(image.permute(0, 3, 1, 2).float() / 255.0), self.projection)


class SamplerStep(nn.Module):
    """One step of an iterative sampler: the U-Net's noise prediction and the update with the step's
    `sampler_table` row, traced once to become the body of the head's ONNX Loop."""

    def __init__(self, policy: DiffusionPolicy, film_offset: bool) -> None:
        super().__init__()
        self.net = policy.net
        self.film_offset = film_offset

    def forward(self, x: torch.Tensor, cond: torch.Tensor, offset: torch.Tensor, row: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        eps = self.net(x, cond, row[:1], film_offset=offset if self.film_offset else None)
        return denoise_step(x, eps, row, noise)


class SamplerLoop(nn.Module):
    """All the sampler's steps as one loop (scripted: the export writes an ONNX Loop around the traced step,
    so the graph and the time to export it do not grow with the number of steps)."""

    def __init__(self, step: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.step = step

    def forward(self, x: torch.Tensor, cond: torch.Tensor, offset: torch.Tensor, table: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        for i in range(table.size(0)):
            x = self.step(x, cond, offset, table[i], noise[i])
        return x


class _SamplerPlaceholder(torch.autograd.Function):
    """Stands for the scripted sampler loop while the head is traced (a traced module cannot call a scripted
    one); `export_graph` puts the loop's own ONNX graph in its place."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cond: torch.Tensor, offset: torch.Tensor, table: torch.Tensor,
                noise: torch.Tensor, sampler: torch.jit.ScriptModule) -> torch.Tensor:
        return x.clone()  # only traced: the output's shape is all that counts

    @staticmethod
    def symbolic(g: Any, x: Any, cond: Any, offset: Any, table: Any, noise: Any, sampler: Any) -> Any:
        out = g.op(f"{SAMPLER_DOMAIN}::{SAMPLER_OP}", x, cond, offset, table, noise)
        out.setType(x.type())
        return out


class HeadGraph(nn.Module):
    """State, noise and the cameras' FiLM terms -> the chunk, as `Policy.predict_chunk` computes it."""

    def __init__(self, head_policy: Policy, film_width: int) -> None:
        super().__init__()
        self.policy = head_policy
        self.ddpm = isinstance(head_policy, DiffusionPolicy) and head_policy.config.sampler == "ddpm"
        self.sampler: torch.jit.ScriptModule | None = None
        if isinstance(head_policy, DiffusionPolicy):
            c = head_policy.config
            self.register_buffer("table", head_policy.sampler_table().float())
            # SamplerLoop's inputs: x, cond, offset, table, noise (one row of the last two per step)
            self.sampler_example = (torch.zeros(1, c.horizon, c.action_dim),
                                    torch.zeros(1, c.n_obs_steps * c.state_dim), torch.zeros(1, film_width),
                                    self.table, torch.zeros(len(self.table), 1, c.horizon, c.action_dim))
            x, cond, offset, table, noise = self.sampler_example
            # the tracer's notes on the U-Net's shape checks, and TorchScript's deprecation
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                step = torch.jit.trace(SamplerStep(head_policy, film_width > 0).eval(),
                                       (x, cond, offset, table[0], noise[0]))
                self.sampler = torch.jit.script(SamplerLoop(step))

    def forward(self, state: torch.Tensor, z: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        z_steps, conditions = (rest[0], rest[1:]) if self.ddpm else (None, rest)
        cond = self.policy.state_normalizer.normalize(state).flatten(1)
        offset = torch.stack(conditions).sum(dim=(0, 2)) if conditions else None  # over cameras and steps
        if self.sampler is None:
            chunk = self.policy.sample_normalized(cond, z, None, film_offset=offset)
        else:
            # DDPM's noise for every step but the last, which adds none; DDIM adds none at all
            last = torch.zeros_like(z)[None]
            noise = torch.cat([z_steps, last]) if z_steps is not None else last.expand(len(self.table), -1, -1, -1)
            args = (z, cond, offset if offset is not None else z.new_zeros(1, 0), self.table, noise)
            # a traced module cannot call a scripted one: the trace records a placeholder for the loop's graph
            chunk = _SamplerPlaceholder.apply(*args, self.sampler) if torch.jit.is_tracing() else self.sampler(*args)
        return self.policy.action_normalizer.unnormalize(chunk)


class PolicyGraphs:
    """The split graphs of one policy: an encoder per camera and the head."""

    def __init__(self, policy: Policy) -> None:
        factored = factor_film(policy)
        self.encoders = {cam: EncoderGraph(policy, cam, factored.projections[cam]).eval()
                         for cam in policy.config.cameras}
        rewrite_convolutions(factored.head_policy.net)  # the head's own copy
        rewrite_mish(factored.head_policy.net)
        rewrite_group_norms(factored.head_policy.net)
        self.film_width = factored.film_width if policy.config.cameras else 0
        self.head = HeadGraph(factored.head_policy, self.film_width).eval()


class FullGraph(nn.Module):
    def __init__(self, graphs: PolicyGraphs) -> None:
        super().__init__()
        self.head = graphs.head
        self.encoders = nn.ModuleList(graphs.encoders.values())

    def forward(self, state: torch.Tensor, z: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        extra, images = (rest[:1], rest[1:]) if self.head.ddpm else ((), rest)
        steps = range(state.shape[1])
        conditions = [torch.stack([encoder(image[:, s])[:, s] for s in steps], dim=1)
                      for encoder, image in zip(self.encoders, images)]
        return self.head(state, z, *extra, *conditions)


def export_graph(module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    head = getattr(module, "head", module)
    sampler = head.sampler if isinstance(head, HeadGraph) else None
    if sampler is None:
        _torch_export(module, args, str(path), names, [_output_name(module)])
        return
    graph = io.BytesIO()  # the placeholder's graph is finished in memory and written once
    _torch_export(module, args, graph, names, [_output_name(module)], custom_opsets={SAMPLER_DOMAIN: 1})
    loop = io.BytesIO()
    _torch_export(sampler, head.sampler_example, loop, list(SAMPLER_INPUTS), ["x_out"])
    _inline_sampler(graph.getvalue(), loop.getvalue(), path)


def _torch_export(module: nn.Module, args: tuple[torch.Tensor, ...], f: str | io.BytesIO, input_names: list[str],
                  output_names: list[str], **options: Any) -> None:
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, f, input_names=input_names, output_names=output_names,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True, **options)


def _inline_sampler(head: bytes, sampler: bytes, path: Path) -> None:
    """Write to `path` the head graph with its sampler placeholder replaced by the scripted sampler's own graph
    (its ONNX Loop)."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(head)
    loop = onnx.load_from_string(sampler).graph
    prefix = "sampler/"
    _prefix_names(loop, prefix)
    nodes = list(model.graph.node)
    (at,) = [i for i, node in enumerate(nodes) if node.domain == SAMPLER_DOMAIN]
    placeholder = nodes[at]
    used = {value.name for value in loop.input}  # the exporter drops inputs the loop does not read
    wiring_in = [helper.make_node("Identity", [outer], [prefix + name])
                 for outer, name in zip(placeholder.input, SAMPLER_INPUTS) if prefix + name in used]
    wiring_out = helper.make_node("Identity", [loop.output[0].name], [placeholder.output[0]])
    model.graph.ClearField("node")
    model.graph.node.extend([*nodes[:at], *wiring_in, *loop.node, wiring_out, *nodes[at + 1:]])
    model.graph.initializer.extend(loop.initializer)
    model.graph.value_info.extend(loop.value_info)
    domains = [entry for entry in model.opset_import if entry.domain != SAMPLER_DOMAIN]
    model.ClearField("opset_import")
    model.opset_import.extend(domains)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _prefix_names(graph: Any, prefix: str) -> None:
    """Prefix every value and node name of `graph` and its subgraphs (all of its references are to its own names)."""
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = prefix + value.name
    for tensor in graph.initializer:
        tensor.name = prefix + tensor.name
    for node in graph.node:
        node.name = prefix + node.name
        node.input[:] = [prefix + name if name else name for name in node.input]
        node.output[:] = [prefix + name if name else name for name in node.output]
        for attribute in node.attribute:
            if attribute.HasField("g"):
                _prefix_names(attribute.g, prefix)
            for subgraph in attribute.graphs:
                _prefix_names(subgraph, prefix)


def _calibration_frames(policy: Policy, metadata: dict[str, Any],
                        calibration: Path | Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Frames per camera at the policy's image size for INT8 calibration; any problem is an ExportError."""
    cameras, size = policy.config.cameras, tuple(policy.config.image_shape)
    if not cameras:
        raise ExportError("int8 encoders need an image policy; this one reads no cameras")
    if calibration is None or isinstance(calibration, (str, Path)):
        path = Path(calibration or metadata["dataset"].get("path", ""))
        try:
            dataset = Dataset(path)
            frames = {cam: dataset.frames(cam, CALIBRATION_FRAMES) for cam in cameras}
        except DatasetError as exc:
            raise ExportError(f"int8 calibration needs the training frames: {exc} (pass a dataset with the "
                              "policy's cameras as calibration)") from None
    else:
        frames = {cam: np.asarray(calibration[cam]) for cam in cameras if cam in calibration}
    for cam in cameras:
        got = frames.get(cam)
        if got is None:
            raise ExportError(f"int8 calibration has no frames of camera {cam!r}")
        if got.dtype != np.uint8 or got.ndim != 4 or got.shape[1:] != (*size, 3) or len(got) < 2:
            raise ExportError(f"int8 calibration frames of {cam!r} must be uint8 [N >= 2, {size[0]}, {size[1]}, 3], "
                              f"got {got.dtype} {list(got.shape)}")
    return frames


def _head_test_feeds(policy: Policy, graphs: PolicyGraphs, head_inputs: Mapping[str, torch.Tensor],
                     images: Mapping[str, torch.Tensor], count: int) -> list[dict[str, np.ndarray]]:
    """`count` head inputs: states uniform over the normaliser's range (what training saw), fresh noise,
    and the FiLM terms of random frames."""
    generator = torch.Generator().manual_seed(1)
    feeds = []
    with torch.no_grad():
        for _ in range(count):
            feed = {name: torch.randn(value.shape, generator=generator) for name, value in head_inputs.items()}
            feed["state"] = policy.state_normalizer.unnormalize(torch.rand(feed["state"].shape, generator=generator) * 2 - 1)
            for cam, graph in graphs.encoders.items():
                frames = torch.randint(0, 256, images[cam][0].shape, generator=generator, dtype=torch.uint8)
                feed[f"condition_{cam}"] = graph(frames).diagonal(dim1=0, dim2=1).T[None]
            feeds.append({name: value.numpy() for name, value in feed.items()})
    return feeds


def _output_name(module: nn.Module) -> str:
    return "condition" if isinstance(module, EncoderGraph) else "action"


def _spec(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    return {name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for name, t in tensors.items()}


def export_policy(checkpoint: Path, out_dir: Path, *, overwrite: bool = False, sampler: str | None = None,
                  inference_steps: int | None = None, int8_encoders: bool = False, int8_head: bool = False,
                  calibration: Path | Mapping[str, np.ndarray] | None = None) -> Path:
    """Write the graphs and the sidecar into `out_dir` (refused if it holds an export, unless `overwrite`).
    A diffusion checkpoint can be exported with another sampler (e.g. DDIM with 10 steps).
    `int8_encoders`: also write INT8 encoders (`encoder_<camera>_int8` graphs), calibrated on frames of
    `calibration` (a dataset path, or uint8 [N, H, W, 3] frames per camera; default: the training dataset).
    `int8_head`: also write an INT8 head (`head_int8`), its error against the float head measured on
    states across the normaliser's range."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    data = read_checkpoint(checkpoint)
    metadata = data.get("metadata") or {}
    if "dataset" not in metadata:
        raise ExportError(f"{checkpoint} has no dataset layout (it was not made by `dbp train`); cannot describe "
                          "the robot interface the export needs")
    if (out_dir / SIDECAR).exists() and not overwrite:
        raise ExportError(f"{out_dir} already holds an exported policy; pass overwrite to replace it")
    policy = load_policy(checkpoint).float()
    calibration_frames = _calibration_frames(policy, metadata, calibration) if int8_encoders else {}
    if int8_head and isinstance(policy, DiffusionPolicy):
        raise ExportError("an int8 head is for one-step policies (DBP, BC): a diffusion head runs its sampler's "
                          "step inside an ONNX Loop, which ONNX Runtime's quantiser leaves float")
    if int8_head and not any(rewritable(m) for m in policy.net.modules()):
        raise ExportError(f"an int8 head quantises the convolutions of {MIN_IN_CHANNELS} channels or more; this "
                          f"policy's U-Net is at most {max(policy.net.cfg.down_dims)} channels wide")
    out_dir.mkdir(parents=True, exist_ok=True)
    if sampler is not None or inference_steps is not None:
        if not isinstance(policy, DiffusionPolicy):
            raise ExportError(f"{checkpoint} holds a {policy.config.method} policy; only diffusion has samplers")
        sampler = sampler or policy.config.sampler
        policy.use_sampler(sampler, inference_steps or (policy.config.num_train_timesteps if sampler == "ddpm" else 10))
    c = policy.config
    layout = metadata["dataset"]["layout"]
    torch.manual_seed(0)
    state = torch.randn(1, c.n_obs_steps, c.state_dim)
    z = torch.randn(1, c.horizon, c.action_dim)
    head_inputs: dict[str, torch.Tensor] = {"state": state, "z": z}
    if isinstance(policy, DiffusionPolicy) and c.sampler == "ddpm":
        head_inputs["z_steps"] = torch.randn(c.num_inference_steps - 1, 1, c.horizon, c.action_dim)
    files: dict[str, dict[str, Any]] = {}
    height, width = c.image_shape
    images = {cam: torch.randint(0, 256, (1, c.n_obs_steps, height, width, 3), dtype=torch.uint8) for cam in c.cameras}
    graphs = PolicyGraphs(policy)
    with torch.no_grad():
        conditions = {}
        for cam, graph in graphs.encoders.items():
            path = out_dir / f"encoder_{cam}.onnx"
            inputs = {"image": images[cam][:, 0]}
            export_graph(graph, tuple(inputs.values()), list(inputs), path)
            files[f"encoder_{cam}"] = {"file": path.name, "inputs": _spec(inputs),
                                       "outputs": _spec({"condition": graph(inputs["image"])})}
            per_frame = graph(images[cam][0])  # [To frames, To steps, W]: frame s at step s
            conditions[f"condition_{cam}"] = per_frame.diagonal(dim1=0, dim2=1).T[None]
        inputs = {**head_inputs, **conditions}
        export_graph(graphs.head, tuple(inputs.values()), list(inputs), out_dir / "head.onnx")
        files["head"] = {"file": "head.onnx", "inputs": _spec(inputs),
                         "outputs": _spec({"action": graphs.head(*inputs.values())})}
        if c.cameras:
            inputs = {**head_inputs, **{f"image_{cam}": images[cam] for cam in c.cameras}}
            full = FullGraph(graphs).eval()
            export_graph(full, tuple(inputs.values()), list(inputs), out_dir / "policy.onnx")
            files["policy"] = {"file": "policy.onnx", "inputs": _spec(inputs),
                               "outputs": _spec({"action": full(*inputs.values())})}
    for cam, frames in calibration_frames.items():
        float_graph = files[f"encoder_{cam}"]
        path = out_dir / f"encoder_{cam}_int8.onnx"
        files[f"encoder_{cam}_int8"] = {"file": path.name, "inputs": float_graph["inputs"],
                                        "outputs": float_graph["outputs"],
                                        "int8": quantize_encoder(out_dir / float_graph["file"], path, frames)}
    if int8_head:
        path = out_dir / "head_int8.onnx"
        feeds = _head_test_feeds(policy, graphs, head_inputs, images, HEAD_TEST_INPUTS)
        files["head_int8"] = {"file": path.name, "inputs": files["head"]["inputs"], "outputs": files["head"]["outputs"],
                              "int8": quantize_head(out_dir / "head.onnx", path, feeds)}
    for entry in files.values():
        entry["sha256"] = sha256_file(out_dir / entry["file"])
    state_names = list(layout["state"]["names"])
    if "objects" in metadata.get("state_keys", []):
        state_names += [f"object{i}_{k}" for i in range((c.state_dim - len(state_names)) // 7)
                        for k in ("x", "y", "z", "qw", "qx", "qy", "qz")]
    sidecar = {
        "format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION,
        "method": c.method, "sampler": getattr(c, "sampler", None), "nfe": policy.nfe,
        "horizon": c.horizon, "n_obs_steps": c.n_obs_steps, "n_action_steps": c.n_action_steps,
        "step_hz": metadata["dataset"].get("rate_hz"),
        "state": {"keys": metadata.get("state_keys", ["joints"]), "names": state_names},
        "action": {"names": list(ROBOT_JOINTS) if c.action_dim == 14
                   else list(layout["action"].get("names", [])),
                   "arms": {side: spec for side, spec in layout["action"].items() if side in SIDES}},
        "cameras": {cam: {"height": height, "width": width, "topic": layout["cameras"][cam]["topic"]}
                    for cam in c.cameras},
        "feature_dim": c.image_feature_dim if c.cameras else 0,
        "condition_dim": graphs.film_width,  # W: an encoder's FiLM term per step
        "normalizer": {
            "state": {"scale": policy.state_normalizer.scale.tolist(), "offset": policy.state_normalizer.offset.tolist()},
            "action": {"scale": policy.action_normalizer.scale.tolist(), "offset": policy.action_normalizer.offset.tolist()},
        },
        "source": {"checkpoint": str(checkpoint.resolve()), "checkpoint_sha256": sha256_file(checkpoint),
                   "exporter": exporter_fingerprint(),
                   "step": int(data.get("step", 0)), "dataset_fingerprint": metadata["dataset"].get("fingerprint"),
                   "tasks": metadata["dataset"].get("tasks")},
        "graphs": files,
        "opset": OPSET,
    }
    (out_dir / SIDECAR).write_text(yaml.safe_dump(sidecar, sort_keys=False))
    return out_dir / SIDECAR
