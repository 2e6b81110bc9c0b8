"""The one face trtq runs ONNX models through: ``infer(feed)`` -> outputs by name (Polygraphy's runner
interface). Calibration, compare, sensitivity, tune and bench's ONNX Runtime backend all use it;
sessions come from trtq/model/session.py, which states the graph-optimisation choices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnx

from trtq.errors import TrtqError
from trtq.model.edit import with_outputs
from trtq.model.files import load_onnx
from trtq.model.session import inference_session

Array = npt.NDArray[Any]


class Runner(Protocol):
    """What compare and tune need of any backend (ONNX Runtime here, TensorRT in trtq/trt)."""

    def infer(self, feed: Mapping[str, Array]) -> dict[str, Array]: ...


class OnnxRunner:
    """One ONNX Runtime session over ``model`` (or a copy exposing ``expose`` as extra outputs)."""

    def __init__(
        self,
        model: onnx.ModelProto | Path,
        *,
        expose: Sequence[str] = (),
        elem_types: Mapping[str, int] | None = None,
        keep_every_tensor: bool = False,
        threads: int = 0,
        source: Path | None = None,
    ) -> None:
        self.source = source if source is not None else model if isinstance(model, Path) else None
        if expose:
            loaded = load_onnx(model) if isinstance(model, Path) else model
            model = with_outputs(loaded, expose, elem_types)
        self.session = inference_session(
            model, keep_every_tensor=keep_every_tensor, threads=threads, source=self.source
        )
        self.input_names = [value.name for value in self.session.get_inputs()]
        self.output_names = [value.name for value in self.session.get_outputs()]

    def infer(self, feed: Mapping[str, Array], outputs: Sequence[str] | None = None) -> dict[str, Array]:
        """Every output (or those named) for one feed; ONNX Runtime's failure as a TrtqError that
        names the model and the shapes fed."""
        names = list(outputs) if outputs is not None else self.output_names
        if not names:  # ONNX Runtime reads an empty list as "every output"
            return {}
        try:
            results = self.session.run(names, dict(feed))
        except Exception as exc:  # ONNX Runtime raises its own types for shapes or values it rejects
            shapes = ", ".join(f"'{name}' {list(np.shape(value))}" for name, value in feed.items())
            where = f"{self.source}: " if self.source is not None else ""
            raise TrtqError(f"{where}ONNX Runtime failed on inputs {shapes}: {exc}") from None
        return dict(zip(names, results, strict=True))
