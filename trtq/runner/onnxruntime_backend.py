"""ONNX Runtime (CPU) backend: lets ``trtq bench`` run anywhere with trtexec's loop and statistics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from trtq.errors import TrtqError
from trtq.model.runner import OnnxRunner
from trtq.runner.timing import QueryTimes


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(
        self, model_path: Path, inputs: dict[str, npt.NDArray[np.float32]], threads: int = 0
    ) -> None:
        self._runner = OnnxRunner(model_path, threads=threads)
        expected = set(self._runner.input_names)
        if set(inputs) != expected:
            raise TrtqError(f"{model_path}: inputs {sorted(expected)} needed, got {sorted(inputs)}")
        self._inputs = inputs
        self.batch_size = int(next(iter(inputs.values())).shape[0])
        self.input_shapes = {name: list(value.shape) for name, value in inputs.items()}
        self.warnings: list[str] = []

    def query(self) -> QueryTimes:
        start = time.perf_counter()
        self._runner.infer(self._inputs)
        return QueryTimes(compute_ms=(time.perf_counter() - start) * 1e3)
