"""torch policies -> ONNX graphs with a sidecar."""
