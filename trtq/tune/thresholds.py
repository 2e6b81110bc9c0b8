"""Per-tensor activation thresholds chosen by measuring the network's output error.

Every candidate comes from the one calibration pass (each algorithm's threshold, and percentiles at
a few levels); near-equal candidates are merged so no run is spent on a difference INT8 cannot see.
Coordinate descent: one tensor at a time, every candidate tried with the others held, the best kept;
tensors are visited in the order of how much their choice mattered in the previous sweep (graph order
in the first), so the tensors that matter most settle first. A candidate that lowers the search error
is kept only when it also lowers the validation error (trtq/tune/judge.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from trtq.calib.algorithms import amax_from, percentile_from
from trtq.calib.run import CalibrationRun
from trtq.config.schema import ALGORITHMS
from trtq.numeric import scale_from_amax
from trtq.tune.judge import Judge, Measured

PERCENTILES = (99.9, 99.99, 99.999)
SAME_SCALE = 0.01
"""Candidates within 1% of one another are one candidate."""

Candidates = dict[str, dict[str, float]]
"""tensor -> candidate label -> scale."""


def candidate_scales(
    run: CalibrationRun, tensors: Sequence[str], percentiles: Sequence[float] = PERCENTILES
) -> Candidates:
    candidates: Candidates = {}
    for tensor in tensors:
        histogram = run.histograms[tensor]
        found: dict[str, float] = {
            a: float(scale_from_amax(amax_from(histogram, a, run.percentile)))
            for a in ALGORITHMS
            if a != "percentile"
        }
        found.update(
            {f"percentile {p}": float(scale_from_amax(percentile_from(histogram, p))) for p in percentiles}
        )
        distinct: dict[str, float] = {}
        for label, scale in sorted(found.items(), key=lambda item: item[1]):
            if scale > 0 and all(abs(scale / kept - 1) > SAME_SCALE for kept in distinct.values()):
                distinct[label] = scale
        candidates[tensor] = distinct
    return candidates


@dataclass(frozen=True)
class ThresholdStep:
    tensor: str
    label: str
    scale: float
    error: float
    gain: float
    """Relative output error before minus after this choice."""


@dataclass
class ThresholdSearch:
    scales: dict[str, float]
    labels: dict[str, str]
    score: Measured
    steps: list[ThresholdStep] = field(default_factory=list)
    rejected: int = 0
    """Candidates that lowered the search error but not the validation error."""


def search_thresholds(
    judge: Judge,
    start: Mapping[str, float],
    start_label: str,
    candidates: Candidates,
    gates: Mapping[str, float],
    sweeps: int = 1,
    progress: Callable[[], None] | None = None,
) -> ThresholdSearch:
    scales = dict(start)
    labels = dict.fromkeys(scales, start_label)
    best = judge.measure(scales, gates)
    search = ThresholdSearch(scales, labels, best)
    order = list(candidates)
    for _ in range(sweeps):
        spread: dict[str, float] = {}
        for tensor in order:
            errors = {}
            for label, scale in candidates[tensor].items():
                if progress is not None:
                    progress()
                if abs(scale / scales[tensor] - 1) <= SAME_SCALE:
                    continue
                verdict = judge.challenge({**scales, tensor: scale}, gates, best)
                trial = verdict.measured
                errors[label] = trial.error
                search.rejected += verdict.rejected_by_validation
                if verdict.kept:
                    search.steps.append(
                        ThresholdStep(tensor, label, scale, trial.error, best.error - trial.error)
                    )
                    best, scales[tensor], labels[tensor] = trial, scale, label
            spread[tensor] = max(errors.values(), default=best.error) - best.error
        order.sort(key=lambda t: -spread[t])
    search.score = best
    return search


def search_runs(candidates: Candidates, sweeps: int) -> int:
    """Candidates tried (or skipped as the current scale) over all sweeps: search_thresholds' progress
    calls, one per candidate."""
    return sweeps * sum(len(c) for c in candidates.values())
