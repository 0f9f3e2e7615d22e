"""INT8 image encoders for CPU robots: static quantisation (QDQ, per-channel weights) of an exported
encoder graph, calibrated on camera frames of the training data.

On the 2-core CPU the ResNet-18 encoder costs several milliseconds a frame, and three 30 Hz cameras
keep most of a core busy beside the control loop; with INT8 weights and activations (VNNI on x86) it
runs a few times faster. Its output then differs slightly from the float graph, so the error is measured
on frames the calibration did not see and recorded in the sidecar; the float graphs stay the default.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FRAMES = 64  # per camera: half calibrate the activation ranges, half measure the output error


def quantize_encoder(float_path: Path, out_path: Path, frames: np.ndarray) -> dict[str, Any]:
    """Write the INT8 version of the encoder graph at `float_path` to `out_path`, calibrated on the even
    frames of `frames` (uint8 [N, H, W, 3], N >= 2); returns the relative error of its output (the frame's FiLM terms) on the odd ones."""
    import onnxruntime as ort
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

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in (float_path, out_path)]
    reference, quantized = ([s.run(None, {"image": f[None]})[0][0] for f in held_out] for s in sessions)
    errors = [np.linalg.norm(q - r) / max(float(np.linalg.norm(r)), 1e-12) for r, q in zip(reference, quantized)]
    return {"calibration_frames": len(calibration), "held_out_frames": len(held_out),
            "output_relative_error": {"mean": float(np.mean(errors)), "max": float(np.max(errors))}}
