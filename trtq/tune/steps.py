"""The tuning steps, each a unit with one signature: ``step(context, tuning) -> Step``.

A step reads what the search was given (``TuneContext``: the calibration pass, the batches and
their FP32 outputs, the weighted layers and their input statistics) and the INT8 setup so far
(``Tuning``), tries its change with the judge (trtq/tune/judge.py), keeps it in ``tuning`` when
the judge does, and returns its record. The orchestrator (trtq/tune/pipeline.py) only runs the
list in order; it knows no step's method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from trtq.calib.run import CalibrationRun
from trtq.compare.outputs import Array
from trtq.compare.tasks import Agreement
from trtq.config.schema import ALGORITHMS, Algorithm, OutputSpec
from trtq.model.index import GraphIndex
from trtq.qdq.export import export_qdq
from trtq.tune.bias import bias_shift, bias_values, with_biases
from trtq.tune.deadline import NO_LIMIT, Deadline
from trtq.tune.judge import Judge, Measured
from trtq.tune.layer_inputs import LayerInputs, WeightedLayer
from trtq.tune.mixed import choose_float_layers
from trtq.tune.search_model import Evaluator, search_model
from trtq.tune.thresholds import candidate_scales, search_runs, search_thresholds
from trtq.tune.weights import TunedWeight, max_scales, quantize_weights, round_nearest, with_weights


@dataclass
class Step:
    """What one step tried and whether it was kept, as tune.json and the tables show it."""

    name: str
    error: float
    cosine: float
    gain: float
    """Relative output error removed by this step (on the search batches)."""
    seconds: float
    kept: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    validation_error: float | None = None
    """Relative output error on the validation batches (None without them, or when not measured
    because the search batches did not improve)."""
    task: float | None = None
    """Task agreement with FP32 on the search batches (None when no task kind is declared)."""
    validation_task: float | None = None

    @property
    def short_name(self) -> str:
        """'thresholds: per-tensor search' -> 'thresholds'; 'plain INT8, mse' -> 'plain INT8'; 'bias
        correction for per-channel max weights (...)' -> 'bias correction'."""
        name = self.name
        for mark in (":", ",", " (", " for "):
            name = name.split(mark)[0]
        return name

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "relative_error": self.error,
            "validation_error": self.validation_error,
            "task_agreement": self.task,
            "validation_task_agreement": self.validation_task,
            "cosine": self.cosine,
            "gain": self.gain,
            "seconds": round(self.seconds, 2),
            "kept": self.kept,
            **self.details,
        }


@dataclass
class ProgressHooks:
    """``stage(description, units)`` when a stage starts, ``advance()`` after each unit of it."""

    stage: Callable[[str, int], None] = lambda _name, _units: None
    advance: Callable[[], None] = lambda: None


@dataclass
class TuneContext:
    """What every step reads and none changes."""

    model: onnx.ModelProto
    run: CalibrationRun
    input_name: str
    search: list[Array]
    validation: list[Array]
    reference: dict[int, dict[str, Array]]
    """FP32 outputs of every search and validation batch, by id of the batch."""
    activations: list[str]
    """The activations a plain Q/DQ export quantizes: the scales the search may change."""
    layers: list[WeightedLayer]
    layer_inputs: dict[str, LayerInputs]
    """Input statistics of each weighted layer, from the fitting batches."""
    max_float_layers: int
    target_cosine: float | None
    sweeps: int
    hooks: ProgressHooks
    tasks: dict[str, OutputSpec]
    """The declared outputs (trtq/compare/declared.py): with a task kind among them, its agreement
    with FP32 is what every step is judged by (trtq/tune/judge.py)."""
    fitting: int = 0
    """Batches the layer input statistics come from (all but the validation batches)."""
    deadline: Deadline = NO_LIMIT
    """When the searches stop trying candidates (trtq/tune/deadline.py)."""

    @property
    def gated_nodes(self) -> list[str]:
        return [layer.node for layer in self.layers]

    def judge(self, qdq_model: onnx.ModelProto, float_weights: Mapping[str, Array] | None = None) -> Judge:
        """A judge of ``qdq_model`` rewritten as a search model (scales as inputs) and, given the
        layers' ``float_weights``, a float/INT8 switch on every weighted layer."""
        gated = self.gated_nodes if float_weights is not None else []
        searched = search_model(qdq_model, self.activations, float_weights or {}, gated)

        def on(part: list[Array]) -> Evaluator:
            return Evaluator(
                searched, self.input_name, part, [self.reference[id(b)] for b in part], self.tasks
            )

        return Judge(on(self.search), on(self.validation) if self.validation else None)


@dataclass
class Tuning:
    """The INT8 setup so far: what each kept step changed."""

    best_algorithm: Algorithm
    scales: dict[str, float]
    """Activation scales of the search's tensors."""
    best: Measured
    corrected: onnx.ModelProto
    """FP32 model for implicit INT8 builds: biases corrected for TensorRT's own max weights, or not."""
    qdq_source: onnx.ModelProto
    """FP32 model the Q/DQ model is exported from (biases corrected for the tuned weights, or not)."""
    judge: Judge
    """Judges changes of scales and float layers on the current Q/DQ model."""
    gates: dict[str, float]
    """1 for a weighted layer in INT8, 0 for one kept in float."""
    weights: dict[str, TunedWeight] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    """Where each scale came from (an algorithm, a percentile)."""
    float_nodes: list[str] = field(default_factory=list)

    def qdq_model(self) -> onnx.ModelProto:
        exported = export_qdq(self.qdq_source, self.scales, self.float_nodes).model
        return with_weights(exported, self.weights)


TuneStep = Callable[[TuneContext, Tuning], Step]
"""The one signature of a step: it may change ``Tuning`` (only where the judge keeps the change)."""


def best_single_algorithm(
    context: TuneContext, algorithm_scales: Mapping[Algorithm, Mapping[str, float]]
) -> tuple[Tuning, Step]:
    """The start: every algorithm's plain INT8 measured; the best one is what the steps improve."""
    started = time.perf_counter()
    context.hooks.stage("single algorithms", len(ALGORITHMS))
    judge = context.judge(export_qdq(context.model, algorithm_scales["entropy"]).model)
    scores, union = {}, {}
    for algorithm in ALGORITHMS:
        scores[algorithm] = judge.measure(_restrict(algorithm_scales[algorithm], context.activations), {})
        union[algorithm] = judge.union_task()
        context.hooks.advance()
    best_algorithm = choose_start(scores, union)
    best = scores[best_algorithm]
    scales = _restrict(algorithm_scales[best_algorithm], context.activations)
    tuning = Tuning(
        best_algorithm,
        scales,
        best,
        context.model,
        context.model,
        judge,
        dict.fromkeys(context.gated_nodes, 1.0),
        labels=dict.fromkeys(scales, best_algorithm),
    )
    record = Step(
        f"plain INT8, {best_algorithm}",
        best.error,
        best.cosine,
        0.0,
        time.perf_counter() - started,
        details={
            "algorithms": {
                a: {
                    "relative_error": s.error,
                    "validation_error": s.validation_error,
                    "cosine": s.cosine,
                    "task_agreement": s.task,
                    "validation_task_agreement": s.validation_task,
                    "search_and_validation_task_agreement": getattr(union[a], "value", None),
                }
                for a, s in scores.items()
            }
        },
        validation_error=best.validation_error,
        task=best.task,
        validation_task=best.validation_task,
    )
    return tuning, record


START_TIE = 2
"""Task agreements within this many decisions (boxes, characters, samples: Agreement.resolution) of
the best are a tie for the start, which the output error then breaks: on a YOLOv8n's 40 search and
validation photos entropy led mse by one box at three times the error, and lost on held-out photos."""


def choose_start(
    scores: Mapping[Algorithm, Measured], union: Mapping[Algorithm, Agreement | None]
) -> Algorithm:
    """The algorithm best by the declared task on search and validation batches together, the lowest
    output error among those tied with it; the lowest error when no task is declared."""
    tasks = {a: u for a, u in union.items() if u is not None}
    tied = list(scores)
    if tasks:
        best = max(tasks.values(), key=lambda u: u.value)
        tied = [a for a, u in tasks.items() if u.value >= best.value - START_TIE * best.resolution]
    return min(tied, key=lambda a: scores[a].pooled_error)


def implicit_bias_correction(context: TuneContext, tuning: Tuning) -> Step:
    """Implicit builds: TensorRT quantizes the weights itself (per-channel max, nearest), so only the
    biases can carry a correction; measured on that model before the Q/DQ-only weight choices."""
    started, before = time.perf_counter(), tuning.best
    biases = {}
    index = GraphIndex.of(context.model)
    for layer in filter(_biased, context.layers):
        matrix, inputs = _matrix(index, layer), context.layer_inputs[layer.node]
        scales = max_scales(matrix)
        nearest = round_nearest(matrix, scales) * scales[..., None]
        bias = bias_values(context.model, layer, scales.size)
        biases[layer.node] = (bias + bias_shift(matrix, nearest, inputs.mean).reshape(-1)).astype(np.float32)
    corrected = with_biases(context.model, _by_node(context), biases)
    verdict = context.judge(export_qdq(corrected, tuning.scales).model).challenge(
        tuning.scales, {}, tuning.best
    )
    if verdict.kept:
        tuning.corrected = tuning.qdq_source = corrected
        tuning.best = verdict.measured
    return _record(
        "bias correction for per-channel max weights (corrected FP32 model)",
        verdict.measured,
        before,
        verdict.kept,
        started,
        {"layers": len(context.layers)},
    )


def qdq_weights(context: TuneContext, tuning: Tuning) -> Step:
    """Q/DQ models hold their own INT8 weights: per channel the cheapest of nearest, clipped and
    sequential rounding for the layer's output (trtq/tune/weights.py), then bias correction."""
    started, before = time.perf_counter(), tuning.best
    context.hooks.stage("weights: rounding and bias correction", len(context.layers))
    tuned: dict[str, TunedWeight] = {}
    biases = {}
    methods: dict[str, int] = {}
    float_weights: dict[str, Array] = {}
    index = GraphIndex.of(context.model)
    for layer in context.layers:
        matrix, inputs = _matrix(index, layer), context.layer_inputs[layer.node]
        float_weights[layer.weight] = weights = _weight(index, layer)
        # With bias correction the mean output error is removed, so only the covariance counts.
        moment = inputs.second_moment
        if _biased(layer):
            moment = moment - inputs.mean[:, :, None] * inputs.mean[:, None, :]
        quantized = quantize_weights(matrix, moment, inputs.rows)
        for method in quantized.method.ravel():
            methods[str(method)] = methods.get(str(method), 0) + 1
        tuned[layer.weight] = TunedWeight(
            layer.unmatrix(quantized.values, weights.shape), quantized.scales.reshape(-1).astype(np.float32)
        )
        if _biased(layer):
            bias = bias_values(context.model, layer, quantized.scales.size)
            shift = bias_shift(matrix, quantized.dequantized(), inputs.mean).reshape(-1)
            biases[layer.node] = (bias + shift).astype(np.float32)
        context.hooks.advance()
    source = with_biases(context.model, _by_node(context), biases)
    judge = context.judge(with_weights(export_qdq(source, tuning.scales).model, tuned), float_weights)
    verdict = judge.challenge(tuning.scales, tuning.gates, tuning.best)
    if verdict.kept:
        tuning.qdq_source, tuning.weights, tuning.judge = source, tuned, judge
        tuning.best = verdict.measured
    else:
        tuning.judge = context.judge(export_qdq(tuning.qdq_source, tuning.scales).model, float_weights)
    return _record(
        "Q/DQ weights: clipped scales, sequential rounding, bias correction",
        verdict.measured,
        before,
        verdict.kept,
        started,
        {"layers": len(context.layers), "channels_by_method": methods},
    )


def thresholds(context: TuneContext, tuning: Tuning) -> Step:
    """Per-tensor thresholds: coordinate descent over the calibration pass's candidates."""
    started, before = time.perf_counter(), tuning.best
    candidates = candidate_scales(context.run, context.activations)
    context.hooks.stage("thresholds", search_runs(candidates, context.sweeps))
    search = search_thresholds(
        tuning.judge,
        tuning.scales,
        tuning.best_algorithm,
        candidates,
        tuning.gates,
        context.sweeps,
        context.hooks.advance,
        context.deadline.share(THRESHOLDS_SHARE if context.max_float_layers > 0 else 1.0),
        tuning.best,
    )
    tuning.scales, tuning.labels, tuning.best = search.scales, search.labels, search.score
    count = sum(len(c) for c in candidates.values())
    details = {
        "candidates": count,
        "tried": search.tried,
        "stopped_by_time_limit": search.stopped_by_deadline,
        "rejected_by_validation": search.rejected,
        "changed": [
            {"tensor": s.tensor, "label": s.label, "scale": s.scale, "gain": s.gain, "task_agreement": s.task}
            for s in search.steps
        ],
    }
    if search.stopped_by_deadline and search.tried == 0:
        details["time_limit_note"] = (
            "the time limit was spent before the threshold search began (the calibration pass, layer "
            "statistics, single algorithms and weights always run whole): no threshold or float layer "
            "was searched; give more time or fewer tuning images"
        )
    elif search.stopped_by_deadline:
        details["time_limit_note"] = (
            f"the time limit stopped the threshold search after {search.tried} of its {count} candidates "
            "(each tensor's farthest first, then the tensors whose choice moved the output most)"
        )
    return _record("thresholds: per-tensor search", search.score, before, True, started, details)


def float_layers(context: TuneContext, tuning: Tuning) -> Step:
    """Mixed precision, last: the weighted layers whose float copy helps most stay in FP16."""
    started, before = time.perf_counter(), tuning.best
    mixed = choose_float_layers(
        tuning.judge,
        tuning.scales,
        context.gated_nodes,
        context.max_float_layers,
        context.target_cosine,
        context.hooks.stage,
        context.hooks.advance,
        context.deadline,
        tuning.best,
    )
    tuning.float_nodes, tuning.best = mixed.float_nodes, mixed.score
    details = {
        "float_layers": mixed.float_nodes,
        "budget": context.max_float_layers,
        "target_cosine": context.target_cosine,
        "measured_alone": len(mixed.ranking),
        "stopped_by_time_limit": mixed.stopped_by_deadline,
        "tried": [
            {
                "node": s.node,
                "alone_gain": s.alone_gain,
                "relative_error": s.error,
                "validation_error": s.validation_error,
                "cosine": s.cosine,
                "kept": s.kept,
                "partial": s.partial,
                "task_agreement": s.task,
            }
            for s in mixed.steps
        ],
    }
    layers = len(context.gated_nodes)
    if mixed.stopped_by_deadline and len(mixed.ranking) < layers:
        details["time_limit_note"] = (
            f"the time limit stopped the float-layer search after measuring {len(mixed.ranking)} of "
            f"{layers} layers alone (in graph order)"
        )
    elif mixed.stopped_by_deadline:
        details["time_limit_note"] = (
            f"the time limit stopped adding float layers after {len(mixed.steps)} tries "
            f"({len(mixed.float_nodes)} kept)"
        )
    return _record("mixed precision: layers kept in FP16", mixed.score, before, True, started, details)


THRESHOLDS_SHARE = 2 / 3
"""Of the time left when the threshold search starts, what it may spend; the float layers get the rest
(and what the thresholds left), unless no layer may stay in float."""

STEPS: tuple[TuneStep, ...] = (implicit_bias_correction, qdq_weights, thresholds, float_layers)
"""After the best single algorithm, in this order: weights and biases first (they change what the
thresholds see), thresholds next, float layers last (they spend a budget on what is left)."""


def _record(
    name: str, measured: Measured, before: Measured, kept: bool, started: float, details: dict[str, Any]
) -> Step:
    return Step(
        name,
        measured.error,
        measured.cosine,
        before.error - measured.error,
        time.perf_counter() - started,
        kept,
        details,
        measured.validation_error,
        measured.task,
        measured.validation_task,
    )


def _weight(index: GraphIndex, layer: WeightedLayer) -> Array:
    weights = index.weight(layer.weight)
    assert weights is not None  # weighted_layers keeps only layers with stored float weights
    return weights


def _matrix(index: GraphIndex, layer: WeightedLayer) -> npt.NDArray[np.float64]:
    return layer.matrix(_weight(index, layer)).astype(np.float64)


def _biased(layer: WeightedLayer) -> bool:
    """Whether bias correction applies: the layer takes a bias input (a MatMul does not)."""
    return layer.has_bias_input


def _by_node(context: TuneContext) -> dict[str, WeightedLayer]:
    return {layer.node: layer for layer in context.layers}


def _restrict(scales: Mapping[str, float], tensors: Sequence[str]) -> dict[str, float]:
    return {t: scales[t] for t in tensors}
