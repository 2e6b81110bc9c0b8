"""Run the FP32 model in ONNX Runtime (CPU) with every floating-point activation exposed as an output.

The tensors exposed are the ones TensorRT calibrates, named as in the ONNX graph: float graph
inputs and the float outputs of every node that is not constant (a Constant, or a node fed only by
constants, which TensorRT folds away).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

from trtq.calib.derived import derived_tensors
from trtq.errors import TrtqError
from trtq.model.files import load_onnx
from trtq.model.index import activation_tensors, shape_only_tensors
from trtq.model.prepare import unquantized_in_control_flow
from trtq.model.runner import OnnxRunner


def check_input(model: onnx.ModelProto, model_path: Path, name: str, shape: tuple[int, ...]) -> None:
    """The config's input must be the model's only input, with the same rank and the same fixed dims."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = {vi.name: vi for vi in model.graph.input if vi.name not in initializers}
    if name not in inputs:
        raise TrtqError(
            f"{model_path}: input '{name}' (inputs.0.name) is not in the model; its inputs are {list(inputs)}"
        )
    if len(inputs) != 1:
        raise TrtqError(f"{model_path}: calibration needs a single-input model; inputs are {list(inputs)}")
    elem_type = inputs[name].type.tensor_type.elem_type
    if elem_type != onnx.TensorProto.FLOAT:
        raise TrtqError(
            f"{model_path}: input '{name}' takes {onnx.TensorProto.DataType.Name(elem_type).lower()}; "
            "calibration feeds it the preprocessed float32 images, so the model needs a float32 input"
        )
    # A dim is fixed when it has a positive value; dim_param, 0 and -1 (some exporters) are dynamic.
    dims = [d.dim_value if d.dim_value > 0 else None for d in inputs[name].type.tensor_type.shape.dim]
    fixed_mismatch = [i for i, d in enumerate(dims) if i < len(shape) and d is not None and d != shape[i]]
    if len(dims) != len(shape) or fixed_mismatch:
        shown = ["?" if d is None else d for d in dims]
        raise TrtqError(
            f"{model_path}: input '{name}' has shape {shown}, "
            f"the config's calibration shape is {list(shape)} (inputs.0: shape or opt)"
        )


class ActivationCollector:
    """A runner over the model that exposes the calibrated activations: all of them, or with
    ``derive`` only those whose histograms cannot be derived from another's."""

    def __init__(
        self,
        model_path: Path,
        input_name: str,
        shape: tuple[int, ...],
        threads: int = 0,
        derive: bool = False,
    ) -> None:
        model = load_onnx(model_path)
        check_input(model, model_path, input_name, shape)
        self.input_name = input_name
        tensors = activation_tensors(model)
        self.tensor_names = list(tensors)
        """Every calibrated activation, in graph order."""
        self.derived = derived_tensors(model, self.tensor_names) if derive else {}
        """Activations not exposed: their histograms follow from their sources'."""
        self.measured_names = [name for name in self.tensor_names if name not in self.derived]
        """The activations ``run`` yields, in graph order."""
        self.in_control_flow = unquantized_in_control_flow(model)
        """Tensors inside control flow that cannot be folded: neither calibrated nor quantized."""
        self.shape_only = shape_only_tensors(model) & set(self.tensor_names)
        """Activations computed from the input's shape alone: the same on every image."""
        self._runner = OnnxRunner(
            model,
            expose=self.measured_names,
            elem_types=tensors,
            keep_every_tensor=True,
            threads=threads,
            source=model_path,
        )

    def run(self, batch: npt.NDArray[np.float32]) -> Iterator[tuple[str, npt.NDArray[np.float32]]]:
        """(tensor name, activation) pairs for one batch; the input itself comes first."""
        results = self._runner.infer({self.input_name: batch})
        wanted = set(self.measured_names)
        if self.input_name in wanted:
            yield self.input_name, batch
        for name, value in results.items():
            if name in wanted:
                with np.errstate(over="ignore"):  # a double beyond float32 becomes inf: named when binned
                    activation = np.asarray(value, dtype=np.float32)
                yield name, activation
