"""Running exported policies with ONNX Runtime."""
