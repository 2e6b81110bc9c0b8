"""The one place trtq makes ONNX Runtime sessions, with the graph-optimisation choices stated once.

- ``keep_every_tensor`` (calibration): no graph optimisation at all, because ONNX Runtime's fusions
  would hide activations that TensorRT calibrates and trtq must expose; no spinning threads.
- otherwise (compare, sensitivity, qdq's check run, bench): ONNX Runtime's default optimisations
  except WeightBiasQuantization, which rewrites Q/DQ graphs made for TensorRT and changes their
  numerics (docs/tensorrt.md, section 7). Bench times the same graph that compare scores.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort

from trtq.errors import TrtqError

PROVIDERS = ["CPUExecutionProvider"]
DISABLED_FOR_QDQ = ["WeightBiasQuantization"]


def inference_session(
    model: onnx.ModelProto | Path,
    *,
    keep_every_tensor: bool = False,
    threads: int = 0,
    source: Path | None = None,
) -> ort.InferenceSession:
    """A CPU session for ``model`` (a file or an in-memory model; ``source`` names the file in errors).

    ONNX Runtime logs nothing below fatal: its failures reach the user once, as trtq's error with
    ONNX Runtime's message in it, not also as its own timestamped log line before that."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 4
    if keep_every_tensor:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        # Calibration alternates this session and binning on the same cores: ONNX Runtime's threads
        # spinning after each run would take them from the binning (docs/benchmarks.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    where = source if source is not None else model if isinstance(model, Path) else "the model"
    if isinstance(model, Path) and not model.is_file():
        raise TrtqError(f"{model}: ONNX model not found")
    data = str(model) if isinstance(model, Path) else model.SerializeToString()
    try:
        return ort.InferenceSession(
            data,
            options,
            providers=PROVIDERS,
            disabled_optimizers=[] if keep_every_tensor else DISABLED_FOR_QDQ,
        )
    except Exception as exc:  # ONNX Runtime raises its own exception types for a model it cannot load
        raise TrtqError(f"{where}: ONNX Runtime cannot load the model: {exc}") from None
