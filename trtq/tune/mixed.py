"""Mixed precision, last: the Conv/Gemm layers whose float copy helps most are kept in FP16.

Each layer is measured alone in float (everything else INT8 as tuned), ranked by the output error it
removes (on the search batches), then added in that order while it still lowers the error (on the
search and the validation batches, trtq/tune/judge.py), until the target cosine is met or the budget
of float layers is spent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from trtq.tune.judge import Judge, Measured


@dataclass(frozen=True)
class FloatStep:
    node: str
    alone_gain: float
    """Output error removed by this layer alone in float."""
    error: float
    cosine: float
    kept: bool
    validation_error: float | None = None


@dataclass
class MixedPrecision:
    float_nodes: list[str]
    score: Measured
    ranking: list[tuple[str, float]] = field(default_factory=list)
    steps: list[FloatStep] = field(default_factory=list)


def choose_float_layers(
    judge: Judge,
    scales: Mapping[str, float],
    nodes: Sequence[str],
    budget: int,
    target_cosine: float | None,
    stage: Callable[[str, int], None] | None = None,
    advance: Callable[[], None] | None = None,
) -> MixedPrecision:
    """``stage``/``advance`` report progress: one stage of the layers measured alone, one of the layers
    that may be tried (those whose float copy helped alone), the untried ones counted when it ends."""
    stage = stage or (lambda _name, _units: None)
    advance = advance or (lambda: None)
    gates = dict.fromkeys(nodes, 1.0)
    best = judge.measure(scales, gates)
    result = MixedPrecision([], best)
    if budget <= 0 or (target_cosine is not None and best.cosine >= target_cosine):
        return result
    stage("float layers: each alone", len(nodes))
    gains = []
    for node in nodes:
        gains.append((node, best.error - judge.search.score(scales, {**gates, node: 0.0}).error))
        advance()
    result.ranking = sorted(gains, key=lambda item: -item[1])
    candidates = [(node, gain) for node, gain in result.ranking if gain > 0]
    stage("float layers: added in turn", len(candidates))
    for node, gain in candidates:
        if len(result.float_nodes) >= budget:
            break
        if target_cosine is not None and best.cosine >= target_cosine:
            break
        verdict = judge.challenge(scales, {**gates, node: 0.0}, best)
        trial, kept = verdict.measured, verdict.kept
        result.steps.append(FloatStep(node, gain, trial.error, trial.cosine, kept, trial.validation_error))
        if kept:
            gates[node] = 0.0
            best = trial
            result.float_nodes.append(node)
        advance()
    for _ in range(len(candidates) - len(result.steps)):
        advance()  # decided without a run: the budget or the target was reached first
    result.score = best
    return result
