"""Honest measurement: FP32 vs plain INT8 vs tuned INT8 on images the search never saw."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from trtq.compare.declared import declared_outputs
from trtq.compare.models import compare_models, evaluation_inputs, run
from trtq.compare.outputs import OutputMetrics
from trtq.compare.tasks import Agreement, agreement
from trtq.config.loader import LoadedConfig
from trtq.model.runner import OnnxRunner
from trtq.qdq.export import export_qdq
from trtq.tune.pipeline import TuneResult

PLAIN, TUNED = "plain", "tuned"


@dataclass(frozen=True)
class HeldOut:
    samples: int
    labels: dict[str, str]
    """``PLAIN`` and ``TUNED`` -> how the tables name them."""
    outputs: dict[str, list[OutputMetrics]]
    """By label: every output's cosine, SNR, errors."""
    agreement: dict[str, Agreement]
    """By label: the declared task metric (else the cosine of all outputs), what tune was judged by."""

    def judged(self, key: str) -> tuple[str, float]:
        """What the held-out verdict compares: the declared task's agreement, else the worst output's
        cosine (a degraded small output would hide in the cosine of all outputs together)."""
        label = self.labels[key]
        declared = self.agreement[label]
        if any(m.kind != "raw" for m in declared.outputs):
            return declared.metric, declared.value
        return "worst output cosine", min(m.cosine for m in self.outputs[label])

    def tuned_is_worse(self) -> bool:
        return self.judged(TUNED)[1] < self.judged(PLAIN)[1]


def evaluate(
    config: LoadedConfig, result: TuneResult, images: Path, max_images: int | None = None
) -> HeldOut:
    """Plain INT8 (the best single algorithm on the tuning images) and the tuned model against FP32."""
    batches, count = evaluation_inputs(config, images, max_images)
    input_name = config.image_input.name
    reference = run(OnnxRunner(result.original), input_name, batches, count)
    specs = declared_outputs(config, reference)
    labels = {PLAIN: f"plain INT8 ({result.best_algorithm})", TUNED: "tuned INT8"}
    models: dict[str, onnx.ModelProto] = {
        labels[PLAIN]: export_qdq(result.original, result.algorithm_scales[result.best_algorithm]).model,
        labels[TUNED]: result.qdq,
    }
    outputs = {label: run(OnnxRunner(model), input_name, batches, count) for label, model in models.items()}
    return HeldOut(
        count,
        labels,
        {label: compare_models(reference, values) for label, values in outputs.items()},
        {label: agreement(specs, reference, values) for label, values in outputs.items()},
    )
