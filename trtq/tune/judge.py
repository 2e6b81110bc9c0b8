"""Which tuning steps are kept: lower error on the search batches, and on validation batches too.

The search fits thresholds, weights and float layers to the search batches; a change that only
fits their noise (a detector's text map on photos with little text, a handful of images) lowers the
search error and raises the error elsewhere. Validation batches are tuning images that no step was
fitted on: a change is kept only when it lowers the error on both. Every kept change then lowers the
pooled error of search and validation batches, so the result is never worse there than the start.
"""

from __future__ import annotations

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
    def validation_error(self) -> float | None:
        return None if self.validation is None else self.validation.error

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

    def challenge(self, scales: Mapping[str, float], gates: Mapping[str, float], best: Measured) -> Verdict:
        """Measure a change against ``best``; validation runs only when the search error is lower."""
        trial = self.search.score(scales, gates)
        if trial.error >= best.error:
            return Verdict(Measured(trial, None), False)
        if self.validation is None or best.validation is None:
            return Verdict(Measured(trial, None), True)
        validation = self.validation.score(scales, gates)
        kept = validation.error < best.validation.error
        return Verdict(Measured(trial, validation), kept, not kept)
