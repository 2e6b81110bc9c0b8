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

from trtq.compare.tasks import Agreement, agreement
from trtq.tune.search_model import Evaluator, Score, joined


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
    def pooled_error(self) -> float:
        """Relative error over search and validation batches together."""
        if self.validation is None:
            return self.search.error
        energy = self.search.energy + self.validation.energy
        noise = self.search.noise + self.validation.noise
        return noise / energy if energy > 0 else noise


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
        bound = best.search.error if stop_early else math.inf
        trial = self.search.score(scales, gates, bound)
        if not trial.improves_on(best.search):
            return Verdict(Measured(trial, None), False)
        if self.validation is None or best.validation is None:
            return Verdict(Measured(trial, None), True)
        bound = best.validation.error if stop_early else math.inf
        validation = self.validation.score(scales, gates, bound)
        kept = validation.improves_on(best.validation)
        return Verdict(Measured(trial, validation), kept, not kept)

    def union_task(self) -> Agreement | None:
        """The task agreement of the last measure()'s search and validation batches as one set (a
        detection F1 or a character agreement counts boxes or characters, not images); None
        without a declared task."""
        parts = [e for e in (self.search, self.validation) if e is not None]
        if self.search.tasks is None or any(not e.last_outputs for e in parts):
            return None
        reference = joined([r for e in parts for r in e.reference])
        outputs = joined([o for e in parts for o in e.last_outputs])
        return agreement(self.search.tasks, reference, outputs)
