"""Honest measurement: FP32 vs plain INT8 vs tuned INT8 on images the search never saw."""

from __future__ import annotations

from pathlib import Path

import onnx

from trtq.compare.models import compare_models, evaluation_inputs, run
from trtq.compare.outputs import OutputMetrics
from trtq.config.loader import LoadedConfig
from trtq.model.runner import OnnxRunner
from trtq.qdq.export import export_qdq
from trtq.tune.pipeline import TuneResult


def evaluate(
    config: LoadedConfig, result: TuneResult, images: Path, max_images: int | None = None
) -> tuple[int, dict[str, list[OutputMetrics]]]:
    """Metrics of plain INT8 (the best single algorithm on the tuning images) and of the tuned model."""
    batches, count = evaluation_inputs(config, images, max_images)
    input_name = config.image_input.name
    reference = run(OnnxRunner(result.original), input_name, batches, count)
    models: dict[str, onnx.ModelProto] = {
        f"plain INT8 ({result.best_algorithm})": export_qdq(
            result.original, result.algorithm_scales[result.best_algorithm]
        ).model,
        "tuned INT8": result.qdq,
    }
    return count, {
        label: compare_models(reference, run(OnnxRunner(model), input_name, batches, count))
        for label, model in models.items()
    }
