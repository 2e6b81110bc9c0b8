"""Per-tensor activation thresholds chosen by measuring the network's output against FP32.

Every candidate comes from the one calibration pass (each algorithm's threshold, and percentiles at
a few levels); near-equal candidates are merged so no run is spent on a difference INT8 cannot see.
Coordinate descent: one tensor at a time, a candidate tried with the others held and kept when the
judge keeps it (better on the search and the validation batches, trtq/tune/judge.py).

The first pass screens: each tensor's candidate farthest from its current scale, in graph order, one
run per tensor, which shows how far each tensor's choice moves the output. The other candidates are
then tried for the tensors whose choice moved it most first, so a time limit (trtq/tune/deadline.py)
leaves out the tensors that matter least; later sweeps go by how much each choice mattered in the
previous one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from trtq.calib.algorithms import amax_from, percentile_from
from trtq.calib.run import CalibrationRun
from trtq.config.schema import ALGORITHMS
from trtq.numeric import scale_from_amax
from trtq.tune.deadline import NO_LIMIT, Deadline
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
    task: float | None = None
    """Task agreement on the search batches after this choice (None without a declared task)."""


@dataclass
class ThresholdSearch:
    scales: dict[str, float]
    labels: dict[str, str]
    score: Measured
    steps: list[ThresholdStep] = field(default_factory=list)
    rejected: int = 0
    """Candidates better on the search batches but not on the validation batches."""
    tried: int = 0
    """Candidates run (a tensor's current scale is never run)."""
    stopped_by_deadline: bool = False

    def attempt(
        self,
        judge: Judge,
        tensor: str,
        label: str,
        scale: float,
        gates: Mapping[str, float],
        stop_early: bool = True,
    ) -> float:
        """Try one candidate, keep it if the judge does; how far it moved the output error (a lower
        bound when its run stopped early)."""
        best = self.score
        verdict = judge.challenge({**self.scales, tensor: scale}, gates, best, stop_early)
        trial = verdict.measured
        self.tried += 1
        self.rejected += verdict.rejected_by_validation
        if verdict.kept:
            self.steps.append(
                ThresholdStep(tensor, label, scale, trial.error, best.error - trial.error, trial.task)
            )
            self.score, self.scales[tensor], self.labels[tensor] = trial, scale, label
        return abs(trial.error - best.error)


def search_thresholds(
    judge: Judge,
    start: Mapping[str, float],
    start_label: str,
    candidates: Candidates,
    gates: Mapping[str, float],
    sweeps: int = 1,
    progress: Callable[[], None] | None = None,
    deadline: Deadline = NO_LIMIT,
    measured: Measured | None = None,
) -> ThresholdSearch:
    """``progress`` is called once per candidate of every sweep, tried or not (search_runs counts them);
    ``measured``: ``start``'s score as the caller knows it, used instead of a run when the deadline has
    passed already (nothing will be compared with it; else the judge's own run is the baseline)."""
    progress = progress or (lambda: None)
    score = measured if measured is not None and deadline.passed() else judge.measure(start, gates)
    search = ThresholdSearch(dict(start), dict.fromkeys(start, start_label), score)
    screened: dict[str, str] = {}
    moved = dict.fromkeys(candidates, 0.0)
    for tensor, found in candidates.items():
        label = _farthest(found, search.scales[tensor])
        if label is None:
            continue
        if deadline.passed():
            search.stopped_by_deadline = True
            continue
        screened[tensor] = label
        progress()  # the screened candidate's unit of the first sweep
        # Whole runs: the move orders the rest, and a run stopped early measures only a lower bound.
        moved[tensor] = search.attempt(judge, tensor, label, found[label], gates, stop_early=False)
    for sweep in range(sweeps):
        order = sorted(candidates, key=lambda t: -moved[t])  # stable: graph order among equals
        moved = dict(moved) if sweep == 0 else dict.fromkeys(candidates, 0.0)
        for tensor in order:
            for label, scale in candidates[tensor].items():
                if sweep == 0 and screened.get(tensor) == label:
                    continue  # counted when screened
                progress()
                if abs(scale / search.scales[tensor] - 1) <= SAME_SCALE:
                    continue
                if deadline.passed():
                    search.stopped_by_deadline = True
                    continue
                moved[tensor] = max(moved[tensor], search.attempt(judge, tensor, label, scale, gates))
    return search


def _farthest(found: Mapping[str, float], scale: float) -> str | None:
    """The candidate farthest from ``scale`` (by ratio), None when every one is the same scale."""
    away = {label: abs(math.log(s / scale)) for label, s in found.items() if abs(s / scale - 1) > SAME_SCALE}
    return max(away, key=lambda label: away[label]) if away else None


def search_runs(candidates: Candidates, sweeps: int) -> int:
    """Candidates tried (or skipped as the current scale) over all sweeps: search_thresholds' progress
    calls, one per candidate."""
    return sweeps * sum(len(c) for c in candidates.values())
