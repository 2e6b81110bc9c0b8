"""``trtq tune``: plain INT8 per algorithm -> tuned weights and biases -> searched thresholds -> float layers.

Every step is measured on the tuning images against FP32 and kept only when it lowers the output
error, so the result is never worse there than the best single calibration algorithm.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from trtq.calib.run import collect_histograms
from trtq.compare.outputs import Array
from trtq.config.loader import LoadedConfig
from trtq.config.schema import ALGORITHMS, Algorithm
from trtq.data.from_config import batch_source
from trtq.data.image_list import ImageEntry
from trtq.onnxruntime_session import inference_session
from trtq.qdq.export import export_qdq
from trtq.qdq.graph import GraphIndex
from trtq.tune.edits import TunedWeight, bias_values, with_biases, with_weights
from trtq.tune.layers import collect_layer_inputs, weighted_layers
from trtq.tune.mixed import MixedPrecision, choose_float_layers
from trtq.tune.search_model import Evaluator, search_model
from trtq.tune.thresholds import ThresholdSearch, candidate_scales, search_thresholds
from trtq.tune.weights import bias_shift, max_scales, quantize_weights, round_nearest

SEARCH_BATCHES = 2
"""Batches the threshold and float-layer searches run per candidate (the weight step sees them all)."""


@dataclass(frozen=True)
class TuneSettings:
    max_float_layers: int
    target_cosine: float | None = None
    search_batches: int = SEARCH_BATCHES
    sweeps: int = 1


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

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "relative_error": self.error,
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
    search = batches[: settings.search_batches]
    reference = [
        dict(zip([o.name for o in fp32.get_outputs()], fp32.run(None, {input_name: b}), strict=True))
        for b in search
    ]
    algorithm_scales = {a: run.scales(a) for a in ALGORITHMS}
    plain = export_qdq(model, algorithm_scales["entropy"])
    activations = list(plain.activation_scales)
    hooks.stage("single algorithms", len(ALGORITHMS))
    plain_eval = Evaluator(search_model(plain.model, activations, {}, []), input_name, search, reference)
    plain_scores = {}
    for algorithm in ALGORITHMS:
        plain_scores[algorithm] = plain_eval.score(_restrict(algorithm_scales[algorithm], activations), {})
        hooks.advance()
    best_algorithm = min(plain_scores, key=lambda a: plain_scores[a].error)
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
                    a: {"relative_error": s.error, "cosine": s.cosine} for a, s in plain_scores.items()
                }
            },
        )
    ]

    # Weights: rounding, clipping and bias correction from one FP32 pass over all tuning batches.
    started = time.perf_counter()
    layers = weighted_layers(model)
    by_node = {layer.node: layer for layer in layers}
    hooks.stage("weights: layer inputs", len(batches))
    stats = collect_layer_inputs(model, layers, input_name, _counted(batches, hooks.advance))
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
    implicit_score = Evaluator(
        search_model(implicit_qdq, activations, {}, []), input_name, search, reference
    ).score(start_scales, {})
    implicit_kept = implicit_score.error < best.error
    steps.append(
        Step(
            "bias correction for per-channel max weights (corrected FP32 model)",
            implicit_score.error,
            implicit_score.cosine,
            best.error - implicit_score.error,
            seconds + time.perf_counter() - started,
            implicit_kept,
            {"layers": len(layers)},
        )
    )
    base_model = implicit_model if implicit_kept else model
    best = implicit_score if implicit_kept else best

    started = time.perf_counter()
    tuned_model = with_biases(model, by_node, qdq_biases)
    tuned_qdq = with_weights(export_qdq(tuned_model, start_scales).model, tuned_weights)
    evaluator = Evaluator(
        search_model(tuned_qdq, activations, float_weights, nodes), input_name, search, reference
    )
    weight_score = evaluator.score(start_scales, gates)
    weights_kept = weight_score.error < best.error
    steps.append(
        Step(
            "Q/DQ weights: clipped scales, sequential rounding, bias correction",
            weight_score.error,
            weight_score.cosine,
            best.error - weight_score.error,
            time.perf_counter() - started,
            weights_kept,
            {"layers": len(layers), "channels_by_method": methods},
        )
    )
    if weights_kept:
        best = weight_score
    else:
        tuned_weights, tuned_model = {}, base_model
        evaluator = Evaluator(
            search_model(export_qdq(base_model, start_scales).model, activations, float_weights, nodes),
            input_name,
            search,
            reference,
        )

    # Thresholds: coordinate descent over the calibration pass's candidates.
    started = time.perf_counter()
    candidates = candidate_scales(run, activations)
    hooks.stage("thresholds", settings.sweeps * sum(len(c) for c in candidates.values()))
    thresholds: ThresholdSearch = search_thresholds(
        evaluator, start_scales, best_algorithm, candidates, gates, settings.sweeps, hooks.advance
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
                "changed": [
                    {"tensor": s.tensor, "label": s.label, "scale": s.scale, "gain": s.gain}
                    for s in thresholds.steps
                ],
            },
        )
    )
    best = thresholds.score

    # Mixed precision last.
    started = time.perf_counter()
    hooks.stage("float layers", len(nodes) + settings.max_float_layers)
    mixed: MixedPrecision = choose_float_layers(
        evaluator, thresholds.scales, nodes, settings.max_float_layers, settings.target_cosine, hooks.advance
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
                        "cosine": s.cosine,
                        "kept": s.kept,
                    }
                    for s in mixed.steps
                ],
            },
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
    )


def conv_layer_count(model: onnx.ModelProto) -> int:
    """The Conv/Gemm layers a float-layer budget in percent counts from."""
    return sum(1 for node in model.graph.node if node.op_type in ("Conv", "Gemm"))


def _restrict(scales: dict[str, float], tensors: Sequence[str]) -> dict[str, float]:
    return {t: scales[t] for t in tensors}


def _counted(batches: Sequence[Array], advance: Callable[[], None]) -> Iterator[Array]:
    for batch in batches:
        yield batch
        advance()
