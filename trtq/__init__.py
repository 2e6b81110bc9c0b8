"""trtq: INT8 calibration and TensorRT deployment for ONNX CNNs."""

__version__ = "0.1.0"
