"""Which tuning steps are kept: better on the search batches, and on validation batches too.

"Better" (trtq/tune/search_model.Score.improves_on) is the output error against FP32 lower without
the declared outputs' task agreement (decoded text, detections, classes, masks) lower, or that
agreement higher without the error higher; the error alone when no task kind is declared. A raw
error can drop while the task gets worse (a YOLO head's class scores hold a tiny share of its energy
next to box coordinates in pixels), and on a few search images a task score moves in coarse steps
a change can win by fitting those images: neither is traded for the other.

The search fits thresholds, weights and float layers to the search batches; a change that only
fits their noise (a detector's text map on photos with little text, a handful of images) scores
better there and worse elsewhere. Validation batches are tuning images that no step was fitted on:
a change is kept only when it is better on both, so the result is never worse on either than the
start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from trtq.tune.search_model import Evaluator, Score


@dataclass(frozen=True)
class Measured:
    search: Score
    validation: Score | None
    """None when there are no validation batches."""

    @property
    def error(self) -> float:
        return self.search.error

    @property
    def cosine(self) -> float:
        return self.search.cosine

    @property
    def task(self) -> float | None:
        return self.search.task

    @property
    def validation_error(self) -> float | None:
        return None if self.validation is None else self.validation.error

    @property
    def validation_task(self) -> float | None:
        return None if self.validation is None else self.validation.task

    @property
    def pooled(self) -> Score:
        """Search and validation batches together: errors pooled from their sums, task agreements
        weighted by their samples (a task score of the union would need both runs' outputs)."""
        if self.validation is None:
            return self.search
        parts = (self.search, self.validation)
        energy = sum(p.energy for p in parts)
        noise = sum(p.noise for p in parts)
        samples = sum(p.samples for p in parts)
        task = None
        if self.search.task is not None and self.validation.task is not None and samples:
            task = sum(p.samples * (p.task or 0.0) for p in parts) / samples
        return Score(
            noise / energy if energy > 0 else noise, self.search.cosine, noise, energy, task, samples
        )


@dataclass(frozen=True)
class Verdict:
    measured: Measured
    kept: bool
    rejected_by_validation: bool = False


class Judge:
    """One evaluator on the search batches, an optional one on the validation batches."""

    def __init__(self, search: Evaluator, validation: Evaluator | None) -> None:
        self.search = search
        self.validation = validation

    def measure(self, scales: Mapping[str, float], gates: Mapping[str, float]) -> Measured:
        validation = None if self.validation is None else self.validation.score(scales, gates)
        return Measured(self.search.score(scales, gates), validation)

    def challenge(
        self,
        scales: Mapping[str, float],
        gates: Mapping[str, float],
        best: Measured,
        stop_early: bool = False,
    ) -> Verdict:
        """Measure a change against ``best``; validation runs only when the search batches improve.
        ``stop_early``: a run whose squared error already exceeds ``best``'s stops there (searches
        that try many candidates; the steps' own records keep whole scores)."""
        bound = best.search.noise if stop_early else math.inf
        trial = self.search.score(scales, gates, bound)
        if not trial.improves_on(best.search):
            return Verdict(Measured(trial, None), False)
        if self.validation is None or best.validation is None:
            return Verdict(Measured(trial, None), True)
        bound = best.validation.noise if stop_early else math.inf
        validation = self.validation.score(scales, gates, bound)
        kept = validation.improves_on(best.validation)
        return Verdict(Measured(trial, validation), kept, not kept)
