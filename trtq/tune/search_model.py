"""One ONNX Runtime session that evaluates every candidate of the search.

The tuned Q/DQ model is rewritten so that each activation scale is a graph input (shared by its Q and
DQ pair, as in the exported model) and each Conv/Gemm has a 0/1 input that mixes its quantized and
float inputs and weights (1: INT8 as exported, 0: kept in float, as ``qdq.exclude`` would). Trying a
threshold or a float layer is then a different feed, not a new model and session.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtq.compare.outputs import Array
from trtq.compare.tasks import agreement
from trtq.config.schema import OutputSpec
from trtq.model.edit import copy_model
from trtq.model.index import GraphIndex
from trtq.model.runner import OnnxRunner

DQ_SUFFIX = "_DequantizeLinear_Output"


def scale_input(tensor: str) -> str:
    return f"{tensor}_scale"


def gate_input(node: str) -> str:
    return f"{node}__int8"


def search_model(
    qdq_model: onnx.ModelProto,
    activations: Sequence[str],
    float_weights: Mapping[str, Array],
    gated_nodes: Sequence[str],
) -> onnx.ModelProto:
    """``qdq_model`` with ``activations``' scales as inputs and a float/INT8 switch on ``gated_nodes``."""
    model = copy_model(qdq_model)
    graph = model.graph
    scale_names = {scale_input(t) for t in activations}
    keep = [init for init in graph.initializer if init.name not in scale_names]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    graph.input.extend(
        helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, []) for n in sorted(scale_names)
    )
    gated = set(gated_nodes)
    ordered: list[onnx.NodeProto] = []
    producers = GraphIndex.of(model).producer
    for node in graph.node:
        if node.name in gated:
            gate = gate_input(node.name)
            graph.input.append(helper.make_tensor_value_info(gate, onnx.TensorProto.FLOAT, []))
            for slot in (0, 1):
                ordered.extend(_mix(graph, node, slot, gate, producers, float_weights))
        ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)
    return model


def _mix(
    graph: onnx.GraphProto,
    node: onnx.NodeProto,
    slot: int,
    gate: str,
    producers: Mapping[str, onnx.NodeProto],
    float_weights: Mapping[str, Array],
) -> list[onnx.NodeProto]:
    """Nodes computing ``x + gate * (dq(x) - x)`` for one dequantized input of ``node``."""
    dequantized = node.input[slot]
    producer = producers.get(dequantized)
    if producer is None or producer.op_type != "DequantizeLinear" or not dequantized.endswith(DQ_SUFFIX):
        return []
    original = dequantized[: -len(DQ_SUFFIX)]
    if slot == 1:
        if original not in float_weights:
            return []
        float_name = f"{original}__float"
        graph.initializer.append(numpy_helper.from_array(np.asarray(float_weights[original]), float_name))
        original = float_name
    prefix = f"{node.name}__mix{slot}"
    node.input[slot] = f"{prefix}_out"
    return [
        helper.make_node("Sub", [dequantized, original], [f"{prefix}_delta"], f"{prefix}_sub"),
        helper.make_node("Mul", [f"{prefix}_delta", gate], [f"{prefix}_gated"], f"{prefix}_mul"),
        helper.make_node("Add", [original, f"{prefix}_gated"], [f"{prefix}_out"], f"{prefix}_add"),
    ]


@dataclass(frozen=True)
class Score:
    error: float
    """Squared output error over the FP32 outputs' energy (1 / SNR)."""
    cosine: float
    """Of all outputs, flattened, against FP32."""
    noise: float = 0.0
    energy: float = 0.0
    """The sums ``error`` divides, so scores of disjoint batches can be pooled."""
    task: float | None = None
    """Agreement with FP32 by the declared outputs' task metric (trtq/compare/tasks.py: the worst
    declared output's, e.g. character agreement, detection F1); None when no task kind is declared."""
    partial: bool = False
    """Stopped early (Evaluator.score's ``stop_above``): ``error`` is a lower bound, no task score."""

    def improves_on(self, other: Score) -> bool:
        """Better without a trade: the error lower and the task agreement not lower, or the task
        agreement higher and the error not higher. On a few search images a task score moves in
        coarse steps (one image's top-1, one box) that a change can win by fitting those images
        while the output drifts; the error alone can drop while the task gets worse (a YOLO head's
        class scores hold a tiny share of its energy). Neither may be bought with the other."""
        if self.task is None or other.task is None:
            return self.error < other.error
        return (self.task >= other.task and self.error < other.error) or (
            self.task > other.task and self.error <= other.error
        )


class Evaluator:
    """Runs the search model on fixed batches against FP32 reference outputs; counts its runs."""

    def __init__(
        self,
        model: onnx.ModelProto,
        input_name: str,
        batches: Sequence[Array],
        reference: Sequence[Mapping[str, Array]],
        tasks: Mapping[str, OutputSpec] | None = None,
    ) -> None:
        """``tasks``: the declared outputs (trtq/compare/declared.py); with a task kind among them
        every score carries the task agreement over all the batches together."""
        self.runner = OnnxRunner(model)
        self.input_name = input_name
        self.batches = batches
        self.reference = reference
        self.tasks = dict(tasks) if tasks and any(s.kind != "raw" for s in tasks.values()) else None
        self.joined_reference = joined(reference) if self.tasks else {}
        self.energy = sum(float(np.sum(v.astype(np.float64) ** 2)) for r in reference for v in r.values())
        self.runs = 0
        self.last_outputs: list[dict[str, Array]] = []
        """The outputs of the last whole run, kept when a task is declared (Judge.union_task)."""

    def _outputs(self, scales: Mapping[str, float], gates: Mapping[str, float]) -> Iterator[dict[str, Array]]:
        feed: dict[str, Array] = {scale_input(t): np.array(s, dtype=np.float32) for t, s in scales.items()}
        feed.update({gate_input(n): np.array(g, dtype=np.float32) for n, g in gates.items()})
        self.runs += 1
        for batch in self.batches:
            feed[self.input_name] = batch
            yield self.runner.infer(feed)

    def score(
        self, scales: Mapping[str, float], gates: Mapping[str, float], stop_above: float = math.inf
    ) -> Score:
        """The score of one setting; ``stop_above``: a relative error past which the remaining
        batches are not run (the error can only grow, so such a setting is not better than one with
        that error: Score.improves_on needs the error no higher). That score is ``partial``."""
        outputs = []
        noise = product = out_energy = 0.0
        for reference, output in zip(self.reference, self._outputs(scales, gates), strict=False):
            outputs.append(output)
            for name, value in reference.items():
                ref, out = value.astype(np.float64), output[name].astype(np.float64)
                noise += float(np.sum((ref - out) ** 2))
                product += float(np.sum(ref * out))
                out_energy += float(np.sum(out**2))
            if self._relative(noise) > stop_above and len(outputs) < len(self.batches):
                return Score(self._relative(noise), math.nan, noise, self.energy, None, partial=True)
        norms = math.sqrt(self.energy * out_energy)
        task = None
        if self.tasks is not None:
            task = agreement(self.tasks, self.joined_reference, joined(outputs)).value
            self.last_outputs = outputs
        return Score(
            self._relative(noise),
            product / norms if norms > 0 else 0.0,
            noise,
            self.energy,
            task,
        )

    def _relative(self, noise: float) -> float:
        return noise / self.energy if self.energy > 0 else noise


def joined(parts: Sequence[Mapping[str, Array]]) -> dict[str, Array]:
    """Outputs of several batches as one, samples along axis 0 (a task metric counts over all)."""
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
