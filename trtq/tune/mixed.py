"""Mixed precision, last: the Conv/Gemm layers whose float copy helps most are kept in FP16.

Each layer is measured alone in float (everything else INT8 as tuned) and ranked by the output error
(on the search batches); those that improve on the start alone (trtq/tune/judge.py: no trade between
the error and the task agreement) are added in that order while they still improve (on the search
and the validation batches), until the target cosine is met, the budget of float layers is spent or
tune's time limit is reached (layers are measured alone in graph order; those not measured by then
are not candidates).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from trtq.tune.deadline import NO_LIMIT, Deadline
from trtq.tune.judge import Judge, Measured
from trtq.tune.search_model import Score


@dataclass(frozen=True)
class FloatStep:
    node: str
    alone_gain: float
    """Output error removed by this layer alone in float."""
    error: float
    cosine: float
    kept: bool
    validation_error: float | None = None
    partial: bool = False
    """The run stopped once its error passed the best one's: ``error`` is a lower bound."""
    task: float | None = None
    """Task agreement on the search batches (None without a declared task, or when stopped early)."""


@dataclass
class MixedPrecision:
    float_nodes: list[str]
    score: Measured
    ranking: list[tuple[str, float]] = field(default_factory=list)
    steps: list[FloatStep] = field(default_factory=list)
    stopped_by_deadline: bool = False
    """Layers left unmeasured or untried at tune's time limit (trtq/tune/deadline.py)."""


def choose_float_layers(
    judge: Judge,
    scales: Mapping[str, float],
    nodes: Sequence[str],
    budget: int,
    target_cosine: float | None,
    stage: Callable[[str, int], None] | None = None,
    advance: Callable[[], None] | None = None,
    deadline: Deadline = NO_LIMIT,
    measured: Measured | None = None,
) -> MixedPrecision:
    """``stage``/``advance`` report progress: one stage of the layers measured alone, one of the layers
    that may be tried (those whose float copy helped alone), the untried ones counted when it ends;
    ``measured``: the score of ``scales`` with every layer INT8 as the caller knows it, used instead of
    a run when the deadline has passed already (nothing will be compared with it)."""
    stage = stage or (lambda _name, _units: None)
    advance = advance or (lambda: None)
    gates = dict.fromkeys(nodes, 1.0)
    best = measured if measured is not None and deadline.passed() else judge.measure(scales, gates)
    result = MixedPrecision([], best)
    if budget <= 0 or (target_cosine is not None and best.cosine >= target_cosine):
        return result
    stage("float layers: each alone", len(nodes))
    alone: dict[str, Score] = {}
    for node in nodes:
        if deadline.passed():
            result.stopped_by_deadline = True
        else:
            alone[node] = judge.search.score(scales, {**gates, node: 0.0})
        advance()
    ranked = sorted(alone, key=lambda node: alone[node].error)
    result.ranking = [(node, best.error - alone[node].error) for node in ranked]
    candidates = [(node, gain) for node, gain in result.ranking if alone[node].improves_on(best.search)]
    stage("float layers: added in turn", len(candidates))
    for node, gain in candidates:
        if len(result.float_nodes) >= budget:
            break
        if target_cosine is not None and best.cosine >= target_cosine:
            break
        if deadline.passed():
            result.stopped_by_deadline = True
            break
        verdict = judge.challenge(scales, {**gates, node: 0.0}, best, stop_early=True)
        trial, kept = verdict.measured, verdict.kept
        partial = trial.search.partial or (trial.validation is not None and trial.validation.partial)
        result.steps.append(
            FloatStep(
                node, gain, trial.error, trial.cosine, kept, trial.validation_error, partial, trial.task
            )
        )
        if kept:
            gates[node] = 0.0
            best = trial
            result.float_nodes.append(node)
        advance()
    for _ in range(len(candidates) - len(result.steps)):
        advance()  # decided without a run: the budget or the target was reached first
    result.score = best
    return result
