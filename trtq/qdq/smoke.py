"""One run of a Q/DQ model in ONNX Runtime on a zero input before it is written: a model that loads but
cannot run (say, a graph input left without a value) is an error, not an output file."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from trtq.errors import TrtqError
from trtq.model.runner import OnnxRunner


def run_once(model: onnx.ModelProto, input_name: str, shape: Sequence[int]) -> None:
    try:
        OnnxRunner(model).infer({input_name: np.zeros(shape, dtype=np.float32)})
    except Exception as exc:
        raise TrtqError(
            f"the Q/DQ model does not run in ONNX Runtime on a zero input '{input_name}' {list(shape)}: {exc}"
        ) from None
