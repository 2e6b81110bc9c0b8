"""``trtq tune``: plain INT8 per algorithm -> tuned weights and biases -> searched thresholds -> float layers.

The tuning batches are split: ``validation_batches`` of them, spread evenly over the list and ending
with the last, are validation batches that no step is fitted on; the first ``search_batches`` of the
others are the search batches every candidate is measured on; the weight statistics come from all
but the validation batches. Every step is kept only when it lowers the output error against FP32 on
the search batches and on the validation batches (trtq/tune/judge.py), so the result is never worse
on those batches together than the best single calibration algorithm (chosen on them together).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from trtq.calib.run import collect_histograms
from trtq.compare.declared import declared_outputs
from trtq.compare.outputs import Array
from trtq.compare.tasks import agreement
from trtq.config.loader import LoadedConfig
from trtq.config.schema import ALGORITHMS, Algorithm
from trtq.data.from_config import batch_source
from trtq.data.image_list import ImageEntry
from trtq.onnxruntime_session import inference_session
from trtq.qdq.export import export_qdq
from trtq.qdq.graph import GraphIndex
from trtq.tune.edits import TunedWeight, bias_values, with_biases, with_weights
from trtq.tune.judge import Judge
from trtq.tune.layers import collect_layer_inputs, weighted_layers
from trtq.tune.mixed import MixedPrecision, choose_float_layers
from trtq.tune.search_model import Evaluator, search_model
from trtq.tune.thresholds import ThresholdSearch, candidate_scales, search_thresholds
from trtq.tune.weights import bias_shift, max_scales, quantize_weights, round_nearest

SEARCH_BATCHES = 2
SEARCH_IMAGES = 8
"""By default the threshold and float-layer searches run each candidate on enough batches for this
many images, and at least SEARCH_BATCHES (the weight step sees all but the validation batches): on
2 images at batch 1 the demo detector's search fitted those images and lost on held-out ones."""
VALIDATION_BATCHES = 0
"""Tuning batches held back from fitting to check each step on; fewer when the tuning images leave
fewer beside the search batches. None by default: on the two models measured in docs/accuracy.md a
few validation batches made the held-out result worse (one outlier image decided)."""


def default_search_batches(batch_size: int) -> int:
    return max(SEARCH_BATCHES, math.ceil(SEARCH_IMAGES / batch_size))


@dataclass(frozen=True)
class TuneSettings:
    max_float_layers: int
    target_cosine: float | None = None
    search_batches: int = SEARCH_BATCHES
    sweeps: int = 1
    validation_batches: int = VALIDATION_BATCHES


@dataclass
class Step:
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
    because the search error did not drop)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "relative_error": self.error,
            "validation_error": self.validation_error,
            "cosine": self.cosine,
            "gain": self.gain,
            "seconds": round(self.seconds, 2),
            "kept": self.kept,
            **self.details,
        }


@dataclass
class TuneResult:
    original: onnx.ModelProto
    corrected: onnx.ModelProto
    """FP32 with biases corrected for TensorRT's own per-channel max weights (implicit INT8 builds)."""
    qdq: onnx.ModelProto
    scales: dict[str, float]
    labels: dict[str, str]
    float_nodes: list[str]
    best_algorithm: Algorithm
    algorithm_scales: dict[Algorithm, dict[str, float]]
    steps: list[Step] = field(default_factory=list)
    conv_layers: int = 0
    split: dict[str, int] = field(default_factory=dict)
    """Batches used for search, fitting (weights) and validation."""


@dataclass
class ProgressHooks:
    """``stage(description, units)`` when a stage starts, ``advance()`` after each unit of it."""

    stage: Callable[[str, int], None] = lambda _name, _units: None
    advance: Callable[[], None] = lambda: None


def tune(
    config: LoadedConfig,
    entries: Sequence[ImageEntry],
    settings: TuneSettings,
    hooks: ProgressHooks | None = None,
) -> TuneResult:
    hooks = hooks or ProgressHooks()
    input_name = config.image_input.name
    hooks.stage("calibration pass (batches)", len(entries) // config.batch_size)
    started = time.perf_counter()
    run = collect_histograms(config, list(entries), lambda _batch: hooks.advance())
    source = batch_source(config, list(entries))
    batches = [batch.data for batch in source]
    model = onnx.load(str(config.model_path))
    fp32 = inference_session(model)
    held = set(validation_positions(len(batches), settings.validation_batches, settings.search_batches))
    fitting = [b for i, b in enumerate(batches) if i not in held]
    search, validation = fitting[: settings.search_batches], [batches[i] for i in sorted(held)]
    outputs = [o.name for o in fp32.get_outputs()]
    reference = {
        id(b): dict(zip(outputs, fp32.run(None, {input_name: b}), strict=True)) for b in search + validation
    }

    def judge_for(qdq_model: onnx.ModelProto) -> Judge:
        def on(part: list[Array]) -> Evaluator:
            return Evaluator(qdq_model, input_name, part, [reference[id(b)] for b in part])

        return Judge(on(search), on(validation) if validation else None)

    algorithm_scales = {a: run.scales(a) for a in ALGORITHMS}
    plain = export_qdq(model, algorithm_scales["entropy"])
    activations = list(plain.activation_scales)
    hooks.stage("single algorithms", len(ALGORITHMS))
    plain_judge = judge_for(search_model(plain.model, activations, {}, []))
    plain_scores = {}
    for algorithm in ALGORITHMS:
        plain_scores[algorithm] = plain_judge.measure(_restrict(algorithm_scales[algorithm], activations), {})
        hooks.advance()
    task = _task_agreements(
        config, plain_judge, {a: _restrict(s, activations) for a, s in algorithm_scales.items()}
    )
    if task:  # the declared task metric picks the start; the output error breaks ties
        best_algorithm = max(task, key=lambda a: (task[a], -plain_scores[a].pooled_error))
    else:
        best_algorithm = min(plain_scores, key=lambda a: plain_scores[a].pooled_error)
    best = plain_scores[best_algorithm]
    steps = [
        Step(
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
                        "task_agreement": task.get(a),
                    }
                    for a, s in plain_scores.items()
                }
            },
            validation_error=best.validation_error,
        )
    ]

    # Weights: rounding, clipping and bias correction from one FP32 pass over all tuning batches.
    started = time.perf_counter()
    layers = weighted_layers(model)
    by_node = {layer.node: layer for layer in layers}
    hooks.stage("weights: layer inputs", len(fitting))
    stats = collect_layer_inputs(model, layers, input_name, _counted(fitting, hooks.advance))
    hooks.stage("weights: rounding and bias correction", len(layers))
    index = GraphIndex.of(model)
    tuned_weights: dict[str, TunedWeight] = {}
    qdq_biases: dict[str, Array] = {}
    implicit_biases: dict[str, Array] = {}
    methods: dict[str, int] = {}
    float_weights: dict[str, Array] = {}
    for layer in layers:
        weights = index.weight(layer.weight)
        assert weights is not None
        float_weights[layer.weight] = weights
        matrix = layer.matrix(weights).astype(np.float64)
        inputs = stats[layer.node]
        covariance = inputs.second_moment - inputs.mean[:, :, None] * inputs.mean[:, None, :]
        quantized = quantize_weights(matrix, covariance, inputs.rows)
        for method in quantized.method.ravel():
            methods[str(method)] = methods.get(str(method), 0) + 1
        tuned_weights[layer.weight] = TunedWeight(
            layer.unmatrix(quantized.values, weights.shape), quantized.scales.reshape(-1).astype(np.float32)
        )
        channels = quantized.scales.size
        bias = bias_values(model, layer, channels)
        shift = bias_shift(matrix, quantized.dequantized(), inputs.mean).reshape(-1)
        qdq_biases[layer.node] = (bias + shift).astype(np.float32)
        plain_scales = max_scales(matrix)
        nearest = round_nearest(matrix, plain_scales) * plain_scales[..., None]
        implicit_biases[layer.node] = (bias + bias_shift(matrix, nearest, inputs.mean).reshape(-1)).astype(
            np.float32
        )
        hooks.advance()
    start_scales = _restrict(algorithm_scales[best_algorithm], activations)
    nodes = [layer.node for layer in layers]
    gates = dict.fromkeys(nodes, 1.0)
    seconds = time.perf_counter() - started

    # Implicit builds: TensorRT quantizes the weights itself (per-channel max, nearest), so only the
    # biases can carry a correction; measured on that model before the Q/DQ-only weight choices.
    started = time.perf_counter()
    implicit_model = with_biases(model, by_node, implicit_biases)
    implicit_qdq = export_qdq(implicit_model, start_scales).model
    implicit = judge_for(search_model(implicit_qdq, activations, {}, [])).challenge(start_scales, {}, best)
    implicit_score = implicit.measured
    steps.append(
        Step(
            "bias correction for per-channel max weights (corrected FP32 model)",
            implicit_score.error,
            implicit_score.cosine,
            best.error - implicit_score.error,
            seconds + time.perf_counter() - started,
            implicit.kept,
            {"layers": len(layers)},
            implicit_score.validation_error,
        )
    )
    base_model = implicit_model if implicit.kept else model
    best = implicit_score if implicit.kept else best

    started = time.perf_counter()
    tuned_model = with_biases(model, by_node, qdq_biases)
    tuned_qdq = with_weights(export_qdq(tuned_model, start_scales).model, tuned_weights)
    judge = judge_for(search_model(tuned_qdq, activations, float_weights, nodes))
    weight = judge.challenge(start_scales, gates, best)
    weight_score = weight.measured
    steps.append(
        Step(
            "Q/DQ weights: clipped scales, sequential rounding, bias correction",
            weight_score.error,
            weight_score.cosine,
            best.error - weight_score.error,
            time.perf_counter() - started,
            weight.kept,
            {"layers": len(layers), "channels_by_method": methods},
            weight_score.validation_error,
        )
    )
    if weight.kept:
        best = weight_score
    else:
        tuned_weights, tuned_model = {}, base_model
        judge = judge_for(
            search_model(export_qdq(base_model, start_scales).model, activations, float_weights, nodes)
        )

    # Thresholds: coordinate descent over the calibration pass's candidates.
    started = time.perf_counter()
    candidates = candidate_scales(run, activations)
    hooks.stage("thresholds", settings.sweeps * sum(len(c) for c in candidates.values()))
    thresholds: ThresholdSearch = search_thresholds(
        judge, start_scales, best_algorithm, candidates, gates, settings.sweeps, hooks.advance
    )
    steps.append(
        Step(
            "thresholds: per-tensor search",
            thresholds.score.error,
            thresholds.score.cosine,
            best.error - thresholds.score.error,
            time.perf_counter() - started,
            details={
                "candidates": sum(len(c) for c in candidates.values()),
                "rejected_by_validation": thresholds.rejected,
                "changed": [
                    {"tensor": s.tensor, "label": s.label, "scale": s.scale, "gain": s.gain}
                    for s in thresholds.steps
                ],
            },
            validation_error=thresholds.score.validation_error,
        )
    )
    best = thresholds.score

    # Mixed precision last.
    started = time.perf_counter()
    hooks.stage("float layers", len(nodes) + settings.max_float_layers)
    mixed: MixedPrecision = choose_float_layers(
        judge, thresholds.scales, nodes, settings.max_float_layers, settings.target_cosine, hooks.advance
    )
    steps.append(
        Step(
            "mixed precision: layers kept in FP16",
            mixed.score.error,
            mixed.score.cosine,
            best.error - mixed.score.error,
            time.perf_counter() - started,
            details={
                "float_layers": mixed.float_nodes,
                "budget": settings.max_float_layers,
                "target_cosine": settings.target_cosine,
                "tried": [
                    {
                        "node": s.node,
                        "alone_gain": s.alone_gain,
                        "relative_error": s.error,
                        "validation_error": s.validation_error,
                        "cosine": s.cosine,
                        "kept": s.kept,
                    }
                    for s in mixed.steps
                ],
            },
            validation_error=mixed.score.validation_error,
        )
    )
    qdq = with_weights(export_qdq(tuned_model, thresholds.scales, mixed.float_nodes).model, tuned_weights)
    return TuneResult(
        original=model,
        corrected=base_model,
        qdq=qdq,
        scales={**algorithm_scales[best_algorithm], **thresholds.scales},
        labels=thresholds.labels,
        float_nodes=mixed.float_nodes,
        best_algorithm=best_algorithm,
        algorithm_scales=algorithm_scales,
        steps=steps,
        conv_layers=conv_layer_count(model),
        split={"search": len(search), "fitting": len(fitting), "validation": len(validation)},
    )


def validation_positions(batches: int, wanted: int, search: int) -> list[int]:
    """Positions of the validation batches: ``wanted`` of them (fewer when the search batches would not
    be left), evenly spaced from the last batch back, so a list sorted by source or kind of image
    gives validation batches of every part of it."""
    count = max(0, min(wanted, batches - search))
    return sorted(batches - 1 - (i * batches) // count for i in range(count)) if count else []


def conv_layer_count(model: onnx.ModelProto) -> int:
    """The Conv/Gemm layers a float-layer budget in percent counts from."""
    return sum(1 for node in model.graph.node if node.op_type in ("Conv", "Gemm"))


def _restrict(scales: dict[str, float], tensors: Sequence[str]) -> dict[str, float]:
    return {t: scales[t] for t in tensors}


def _counted(batches: Sequence[Array], advance: Callable[[], None]) -> Iterator[Array]:
    for batch in batches:
        yield batch
        advance()


def _task_agreements(
    config: LoadedConfig, judge: Judge, scales: dict[Algorithm, dict[str, float]]
) -> dict[Algorithm, float]:
    """Each plain algorithm's agreement with FP32 by the declared outputs' task metric
    (trtq/compare/tasks.py) on the search and validation batches; empty when none is declared."""
    if all(spec.kind == "raw" for spec in config.spec.outputs.values()):
        return {}
    evaluators = [e for e in (judge.search, judge.validation) if e is not None]

    def joined(parts: Sequence[Mapping[str, Array]]) -> dict[str, Array]:
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    reference = joined([r for e in evaluators for r in e.reference])
    specs = declared_outputs(config, reference)
    return {
        algorithm: agreement(
            specs, reference, joined([o for e in evaluators for o in e.outputs_for(kept, {})])
        ).value
        for algorithm, kept in scales.items()
    }
