"""Which quantized activations hurt: quantize all but one tensor, and one tensor alone, and rank.

Weights stay per-channel INT8 in every variant, so the ranking is about activation scales, the part
calibration chooses. The proposal keeps the consumers of the worst tensors in higher precision
(``qdq.exclude`` for Q/DQ models, ``build.layer_precisions`` for TensorRT 10 implicit INT8) and
is measured with that change applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from trtq.compare.models import run
from trtq.compare.outputs import Array, finite_reference
from trtq.compare.tasks import agreement
from trtq.config.schema import OutputSpec
from trtq.model.index import GraphIndex
from trtq.model.runner import OnnxRunner
from trtq.qdq.export import export_qdq

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TensorSensitivity:
    tensor: str
    alone: float
    """Agreement with FP32 (SensitivityResult.metric) with only this activation quantized (weights
    quantized everywhere)."""
    all_but: float
    """Agreement with every activation but this one quantized."""
    consumers: list[str]

    @property
    def damage(self) -> float:
        return 1.0 - self.alone


@dataclass
class SensitivityResult:
    full_int8: float
    weights_only: float
    ranking: list[TensorSensitivity]
    proposal: list[str] = field(default_factory=list)
    """Node names to keep in higher precision."""
    with_proposal: float = float("nan")
    metric: str = "cosine of all outputs"
    """What the scores are: the declared outputs' task metric (trtq/compare/tasks.py), else cosine."""

    def proposal_yaml(self) -> str:
        names = ", ".join(f'"{name}"' for name in self.proposal)
        layers = ", ".join(f'"{name}": fp16' for name in self.proposal)
        return f"qdq:\n  exclude: [{names}]\nbuild:\n  layer_precisions: {{{layers}}}\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": f"{self.metric} against FP32",
            "full_int8": self.full_int8,
            "weights_only": self.weights_only,
            "with_proposal": self.with_proposal,
            "with_proposal_measured_on": "the images that chose the proposal (optimistic)",
            "proposal": self.proposal,
            "proposal_yaml": self.proposal_yaml(),
            "ranking": [
                {"tensor": t.tensor, "alone": t.alone, "all_but": t.all_but, "consumers": t.consumers}
                for t in self.ranking
            ],
        }


def analyse_sensitivity(
    model: onnx.ModelProto,
    scales: Mapping[str, float],
    input_name: str,
    batches: Sequence[Array],
    count: int,
    exclude: Sequence[str] = (),
    worst: int = 3,
    progress: Progress | None = None,
    specs: Mapping[str, OutputSpec] | None = None,
) -> SensitivityResult:
    """``specs``: the config's declared outputs, whose task metric ranks (default: output cosine)."""
    reference = run(OnnxRunner(model), input_name, batches, count)
    finite_reference(reference)
    metric = agreement(specs or {}, reference, reference).metric

    def score(kept: Mapping[str, float], extra_exclude: Sequence[str] = ()) -> float:
        qdq = export_qdq(model, kept, [*exclude, *extra_exclude]).model
        return agreement(specs or {}, reference, run(OnnxRunner(qdq), input_name, batches, count)).value

    points = list(export_qdq(model, scales, exclude).activation_scales)
    index = GraphIndex.of(model)
    ranking = []
    for done, tensor in enumerate(points):
        ranking.append(
            TensorSensitivity(
                tensor=tensor,
                alone=score({tensor: scales[tensor]}),
                all_but=score({k: v for k, v in scales.items() if k != tensor}),
                consumers=[node.name for node, _ in index.consumers.get(tensor, [])],
            )
        )
        if progress is not None:
            progress(done + 1, len(points))
    ranking.sort(key=lambda t: (t.alone, -t.all_but))
    result = SensitivityResult(
        full_int8=score(scales), weights_only=score({}), ranking=ranking, metric=metric
    )
    result.proposal = sorted({name for t in ranking[:worst] for name in t.consumers})
    result.with_proposal = score(scales, result.proposal)
    return result
