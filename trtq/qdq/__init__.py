"""Explicit quantization: Q/DQ ONNX models from per-tensor scales, following TensorRT's placement rules.

graph indexes the model (producers, consumers, constants), placement decides which edges get Q/DQ
(a QdqPlan), export writes the plan into a copy of the model, scales reads them from a cache.
"""

from trtq.qdq.export import QdqResult, export_qdq

__all__ = ["QdqResult", "export_qdq"]
