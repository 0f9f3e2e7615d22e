"""INT8 graphs for CPU robots, written beside the float ones, which stay the default.

Encoders: static quantisation (QDQ, per-channel weights) of an exported encoder graph, calibrated on
camera frames of the training data. On the 2-core CPU the ResNet-18 encoder costs several milliseconds a
frame, and three 30 Hz cameras keep most of a core busy beside the control loop; with INT8 weights and
activations (VNNI on x86) it runs a few times faster.

Head: dynamic quantisation of its MatMuls, which are the U-Net's convolutions of 128 channels and more
(`matmul_conv`) and its FiLM layer, and hold most of the `small` head's weights: INT8 weights per output channel,
activations quantised per call, so no calibration data is needed. At batch 1 the head reads all its
weights on every call, and a quarter of the bytes is most of the gain.

Either graph's output then differs slightly from the float graph's, so the error is measured on inputs
the calibration did not see and recorded in the sidecar.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FRAMES = 64  # per camera: half calibrate the activation ranges, half measure the output error
MATMUL_OPS = ("MatMul", "Gemm")  # the head's wide convolutions (`matmul_conv`) and its merged FiLM layer


def quantize_encoder(float_path: Path, out_path: Path, frames: np.ndarray) -> dict[str, Any]:
    """Write the INT8 version of the encoder graph at `float_path` to `out_path`, calibrated on the even
    frames of `frames` (uint8 [N, H, W, 3], N >= 2); returns the relative error of its output (the frame's FiLM terms) on the odd ones."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
        raise ValueError(f"calibration frames must be uint8 [N >= 2, H, W, 3], got {frames.dtype} {frames.shape}")
    calibration, held_out = frames[0::2], frames[1::2]

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            frame = next(self.remaining, None)
            return None if frame is None else {"image": frame[None]}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"  # shapes inferred and graph folded, as quantisation expects
        quant_pre_process(str(float_path), str(prepared))
        # convolutions and the projection carry the cost; GroupNorm's affine stays float
        quantize_static(str(prepared), str(out_path), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "Gemm", "MatMul"])

    reference, quantized = _outputs(float_path, out_path, [{"image": frame[None]} for frame in held_out])
    return {"calibration_frames": len(calibration), "held_out_frames": len(held_out),
            "output_relative_error": _relative_error(reference, quantized)}


def quantize_head(float_path: Path, out_path: Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Write the INT8 version of the head graph at `float_path` to `out_path`; returns how far its chunk
    (robot units) is from the float graph's on `feeds` (inputs of one call each)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        # what the quantiser is given: the pre-processing fuses a MatMul and its bias into a Gemm
        matmuls = _count_ops(onnx.load(str(prepared)).graph, MATMUL_OPS)
        # the narrow convolutions stay float: ONNX Runtime's INT8 Conv was slower there. 7-bit weights
        # (reduce_range): without VNNI (an AVX2-only x86, such as an AMD EPYC CI machine) the u8 x s8 products
        # are summed in pairs into saturating int16, and full-range weights overflowed there (the chunk 34%
        # off the float head's); an export must run right on whatever CPU the robot has
        quantize_dynamic(str(prepared), str(out_path), op_types_to_quantize=list(MATMUL_OPS), per_channel=True,
                         reduce_range=True, weight_type=QuantType.QInt8)
    quantized_graph = onnx.load(str(out_path)).graph
    left_float = _count_ops(quantized_graph, MATMUL_OPS)
    if left_float:  # the quantiser skips what it cannot handle without a word
        out_path.unlink()
        raise ValueError(f"ONNX Runtime's quantiser left {left_float} of the head's {matmuls} MatMuls/Gemms float")

    reference, quantized = _outputs(float_path, out_path, feeds)
    absolute = [float(np.abs(q - r).max()) for r, q in zip(reference, quantized)]
    return {"quantized_matmuls": matmuls, "test_inputs": len(feeds),
            "output_max_abs_error": {"mean": float(np.mean(absolute)), "max": float(np.max(absolute))},
            "output_relative_error": _relative_error(reference, quantized)}


def _count_ops(graph: Any, op_types: Collection[str]) -> int:
    """Nodes of `op_types` in `graph` and its subgraphs (an iterative sampler's step is a Loop's body)."""
    return sum((node.op_type in op_types)
               + sum(_count_ops(a.g, op_types) for a in node.attribute if a.HasField("g"))
               + sum(_count_ops(g, op_types) for a in node.attribute for g in a.graphs)
               for node in graph.node)


def _outputs(float_path: Path, quantized_path: Path,
             feeds: list[dict[str, np.ndarray]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each graph's first output (batch item 0) on every feed: the float graph's, then the quantised one's."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for p in (float_path, quantized_path)]
    reference, quantized = ([session.run(None, feed)[0][0] for feed in feeds] for session in sessions)
    return reference, quantized


def _relative_error(reference: list[np.ndarray], quantized: list[np.ndarray]) -> dict[str, float]:
    errors = [np.linalg.norm(q - r) / max(float(np.linalg.norm(r)), 1e-12) for r, q in zip(reference, quantized)]
    return {"mean": float(np.mean(errors)), "max": float(np.max(errors))}
