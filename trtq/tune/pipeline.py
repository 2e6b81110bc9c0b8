"""``trtq tune`` as a recipe: prepare the search, start from the best single algorithm, run the steps
(trtq/tune/steps.py: bias correction, Q/DQ weights, thresholds, float layers) in order.

The tuning batches are split: ``validation_batches`` of them, spread evenly over the list and ending
with the last, are validation batches that no step is fitted on; the first ``search_batches`` of the
others are the search batches every candidate is measured on; the weight statistics come from all
but the validation batches. Every step is kept only when it is better on the search batches and on
the validation batches (trtq/tune/judge.py: the output error against FP32 lower without the declared
outputs' task agreement lower, or that agreement higher without the error higher), so the result is
never worse on those batches than the best single calibration algorithm (chosen on them together,
by the task agreement first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import onnx

from trtq.calib.run import collect_histograms
from trtq.compare.declared import check_declared_names, declared_outputs
from trtq.compare.outputs import Array, finite_reference
from trtq.config.loader import LoadedConfig
from trtq.config.schema import ALGORITHMS, Algorithm
from trtq.data.batches import Batch
from trtq.data.from_config import batch_source
from trtq.data.image_list import ImageEntry
from trtq.model.files import load_onnx
from trtq.model.index import GraphIndex
from trtq.model.runner import OnnxRunner
from trtq.qdq.export import export_qdq
from trtq.tune.deadline import NO_LIMIT, Deadline
from trtq.tune.layer_inputs import collect_layer_inputs, weighted_layers
from trtq.tune.steps import STEPS, ProgressHooks, Step, TuneContext, best_single_algorithm

SEARCH_BATCHES = 2
SEARCH_IMAGES = 8
"""By default the threshold and float-layer searches run each candidate on enough batches for this
many images, and at least SEARCH_BATCHES (the weight step sees all but the validation batches): on
2 images at batch 1 the demo detector's search fitted those images and lost on held-out ones."""
VALIDATION_SHARE = 4
"""By default one tuning batch in this many (at least one, as long as the search keeps its batches)
is held back as a validation batch: a step is kept only when it also lowers the error there, so a
change that only fits the search batches is not kept (issue 18: tune fitted its 20 search lines)."""
VALIDATION_BATCHES = 0
"""Settings' value when validation is off (--validation-batches 0)."""
TIME_LIMIT_S = 60.0
"""trtq tune's default time limit: issue 18's goal for a classifier, a detector and a recognizer on
2 cores; the searches try their most promising candidates first (trtq/tune/deadline.py)."""


def default_search_batches(batch_size: int) -> int:
    return max(SEARCH_BATCHES, math.ceil(SEARCH_IMAGES / batch_size))


def default_validation_batches(batches: int, search: int) -> int:
    """A quarter of the tuning batches (at least one), never taking the search batches' place."""
    return max(0, min(max(1, batches // VALIDATION_SHARE), batches - search))


@dataclass(frozen=True)
class TuneSettings:
    max_float_layers: int
    target_cosine: float | None = None
    search_batches: int = SEARCH_BATCHES
    sweeps: int = 1
    validation_batches: int = VALIDATION_BATCHES
    time_limit_s: float | None = None
    """Seconds from tune()'s start after which its searches stop (trtq/tune/deadline.py); the
    command derives it from --time-limit-s, which counts from its own start."""


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
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds of the preparation (calibration pass, layer inputs); each step records its own."""

    def time_limit_notes(self) -> list[str]:
        """What the time limit left out, one line per step it stopped."""
        return [
            str(step.details["time_limit_note"]) for step in self.steps if "time_limit_note" in step.details
        ]

    def time_breakdown(self) -> str:
        """One line: where the time went, preparation first, then each step by its short name."""
        parts = [*self.timings.items(), *((step.short_name, step.seconds) for step in self.steps)]
        return "time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in parts)


def tune(
    config: LoadedConfig,
    entries: Sequence[ImageEntry],
    settings: TuneSettings,
    hooks: ProgressHooks | None = None,
) -> TuneResult:
    """Prepare the search, start from the best single algorithm, then run every step in order."""
    deadline = Deadline.after(settings.time_limit_s)
    context, algorithm_scales, timings = prepare(
        config, entries, settings, hooks or ProgressHooks(), deadline
    )
    tuning, start = best_single_algorithm(context, algorithm_scales)
    steps = [start, *(step(context, tuning) for step in STEPS)]
    return TuneResult(
        original=context.model,
        corrected=tuning.corrected,
        qdq=tuning.qdq_model(),
        scales={**algorithm_scales[tuning.best_algorithm], **tuning.scales},
        labels=tuning.labels,
        float_nodes=tuning.float_nodes,
        best_algorithm=tuning.best_algorithm,
        algorithm_scales=algorithm_scales,
        steps=steps,
        conv_layers=conv_layer_count(context.model),
        split={
            "search": len(context.search),
            "fitting": context.fitting,
            "validation": len(context.validation),
        },
        timings=timings,
    )


def prepare(
    config: LoadedConfig,
    entries: Sequence[ImageEntry],
    settings: TuneSettings,
    hooks: ProgressHooks,
    deadline: Deadline = NO_LIMIT,
) -> tuple[TuneContext, dict[Algorithm, dict[str, float]], dict[str, float]]:
    """One calibration pass (every algorithm's scales), the batches split into search, fitting and
    validation, their FP32 outputs, and the weighted layers' input statistics."""
    input_name = config.image_input.name
    check_declared_names(config)
    source = batch_source(config, list(entries))
    hooks.stage("calibration pass (batches)", source.expected_batches)  # a wrapped last batch counts
    started = time.perf_counter()
    done = 0

    def batch_done(_batch: Batch) -> None:
        nonlocal done
        done += 1
        hooks.advance()

    run = collect_histograms(config, list(entries), batch_done)
    for _ in range(source.expected_batches - done):
        hooks.advance()  # batches that skipped images (on_bad_image: skip) did not make
    batches = [batch.data for batch in source]
    model = load_onnx(config.model_path)
    fp32 = OnnxRunner(model)
    held = set(validation_positions(len(batches), settings.validation_batches, settings.search_batches))
    fitting = [b for i, b in enumerate(batches) if i not in held]
    search, validation = fitting[: settings.search_batches], [batches[i] for i in sorted(held)]
    reference = {id(b): fp32.infer({input_name: b}) for b in search + validation}
    for outputs in reference.values():
        finite_reference(outputs)
    tasks = declared_outputs(config, reference[id(search[0])])
    algorithm_scales = {a: run.scales(a) for a in ALGORITHMS}
    activations = list(export_qdq(model, algorithm_scales["entropy"]).activation_scales)
    timings = {"calibration": time.perf_counter() - started}
    started = time.perf_counter()
    layers = weighted_layers(model)
    hooks.stage("weights: layer inputs", len(fitting))
    layer_inputs = collect_layer_inputs(
        model, layers, input_name, _counted(fitting, hooks.advance), len(fitting)
    )
    timings["layer inputs"] = time.perf_counter() - started
    context = TuneContext(
        model,
        run,
        input_name,
        search,
        validation,
        reference,
        activations,
        layers,
        layer_inputs,
        settings.max_float_layers,
        settings.target_cosine,
        settings.sweeps,
        hooks,
        tasks,
        fitting=len(fitting),
        deadline=deadline,
    )
    return context, algorithm_scales, timings


def validation_positions(batches: int, wanted: int, search: int) -> list[int]:
    """Positions of the validation batches: ``wanted`` of them (fewer when the search batches would not
    be left), evenly spaced from the last batch back, so a list sorted by source or kind of image
    gives validation batches of every part of it."""
    count = max(0, min(wanted, batches - search))
    return sorted(batches - 1 - (i * batches) // count for i in range(count)) if count else []


def conv_layer_count(model: onnx.ModelProto) -> int:
    """The layers a float-layer budget in percent counts from: Conv, Gemm, and MatMul by a stored
    weight matrix (the attention projections of transformer necks)."""
    index = GraphIndex.of(model)

    def weighted(node: onnx.NodeProto) -> bool:
        if node.op_type in ("Conv", "Gemm"):
            return True
        matrix = index.weight(node.input[1]) if node.op_type == "MatMul" else None
        return matrix is not None and matrix.ndim == 2

    return sum(1 for node in model.graph.node if weighted(node))


def _counted(batches: Sequence[Array], advance: Callable[[], None]) -> Iterator[Array]:
    for batch in batches:
        yield batch
        advance()
