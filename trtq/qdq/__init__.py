"""Explicit quantization: Q/DQ ONNX models from per-tensor scales, following TensorRT's placement rules.

placement decides which edges get Q/DQ (importer -> plan); insert writes them (plan -> exporter).
"""

from trtq.qdq.export import QdqResult, export_qdq

__all__ = ["QdqResult", "export_qdq"]
