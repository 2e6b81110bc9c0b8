"""Every algorithm's INT8 model scored against FP32 on images it was not calibrated on, after the one
calibration pass: the choice for ``algorithm: auto``, and a warning when a fixed algorithm collapses.

Where the scored images come from (docs/accuracy.md, "Choosing the algorithm"):

- ``eval_images`` (config or ``--images``): the whole list is calibrated on, the other list
  scored.
- otherwise the last whole batches of the list (``holdout``, a share): the pass runs over the whole
  list as always (the cache is the one TensorRT would make from every listed image), and a copy of
  the histograms taken before the held batches gives the models that are scored. Those models saw
  only the earlier batches, so no image is scored after being calibrated on; the algorithm they
  choose is then applied to the histograms of the whole list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trtq.cache.manifest import manifest_path, read_manifest
from trtq.calib.run import CalibrationRun
from trtq.compare.declared import declared_outputs
from trtq.compare.models import HeldOutBatches, run
from trtq.compare.tasks import Agreement, agreement
from trtq.config.loader import LoadedConfig, config_error
from trtq.config.schema import ALGORITHMS, Algorithm
from trtq.data.image_list import ImageEntry
from trtq.errors import TrtqError
from trtq.model.files import load_onnx
from trtq.model.runner import OnnxRunner
from trtq.qdq.export import export_qdq
from trtq.text import counted

FAR_BELOW = 0.05
"""A fixed algorithm this far (absolute, every agreement is in [0, 1]) below the best one is warned
about: beyond what a few held-out images' noise explains, and far enough to matter (a collapsed
model is at 0)."""


def held_batches(batches: int, share: float) -> int:
    """How many of the list's last batches are scored: ``share`` of them rounded up, but never all
    (at least one batch is calibrated on); none when the share is 0 or there is one batch."""
    if share <= 0 or batches < 2:
        return 0
    return min(batches - 1, math.ceil(batches * share))


def cache_algorithm(config: LoadedConfig) -> Algorithm:
    """The algorithm of the config's cache: the configured one, or the one ``auto`` chose (in the
    manifest written by ``trtq calibrate``; TensorRT's calibrators cannot choose)."""
    configured = config.spec.calibration.algorithm
    if configured != "auto":
        return configured
    chosen = (
        read_manifest(config.cache_path).algorithm if manifest_path(config.cache_path).is_file() else None
    )
    if chosen not in ALGORITHMS:
        raise config_error(
            config,
            ("calibration", "algorithm"),
            f"auto is chosen by `trtq calibrate {config.source}` on held-out images; run it first "
            f"(no manifest beside {config.cache_path} names the chosen algorithm)",
        )
    return next(a for a in ALGORITHMS if a == chosen)


def with_eval_images(config: LoadedConfig, images: Path) -> LoadedConfig:
    """``config`` with calibration.eval_images set to ``images`` (the --images option)."""
    calibration = config.spec.calibration.model_copy(update={"eval_images": str(images.resolve())})
    return replace(config, spec=config.spec.model_copy(update={"calibration": calibration}))


@dataclass(frozen=True)
class Evaluation:
    scores: dict[Algorithm, Agreement]
    """The algorithms that have scales (a threshold beyond float32's range has none)."""
    images: int
    where: str
    """Which images were scored and which calibrated on, in words."""
    unscored: dict[Algorithm, str] = field(default_factory=dict)
    """Algorithms without scales, and why."""

    @property
    def metric(self) -> str:
        return next(iter(self.scores.values())).metric

    @property
    def best(self) -> Algorithm:
        """The highest agreement; on a tie the first in ALGORITHMS (entropy, TensorRT's own)."""
        return max(self.scores, key=lambda a: (self.scores[a].value, -ALGORITHMS.index(a)))

    def far_below(self, algorithm: Algorithm) -> bool:
        if algorithm not in self.scores:
            return False
        return self.scores[algorithm].value < self.scores[self.best].value - FAR_BELOW

    def reason(self) -> str:
        """Why ``best`` was chosen, for the summary and the manifest."""
        best = self.best
        others = sorted((a for a in self.scores if a != best), key=lambda a: -self.scores[a].value)
        after = f" (next: {others[0]} {self.scores[others[0]].value:.4f})" if others else ""
        return f"{best} has the best {self.metric}, {self.scores[best].value:.4f}, on {self.where}{after}"

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "scored_on": self.where,
            "metric": self.metric,
            "best": self.best,
            "algorithms": {a: s.to_json() for a, s in self.scores.items()},
            "unscored": self.unscored,
        }


def evaluate(
    config: LoadedConfig, calibrated: CalibrationRun, images: list[ImageEntry], where: str
) -> Evaluation | None:
    """Each algorithm's Q/DQ model (scales from ``calibrated``) against FP32 on ``images``, judged by
    the declared outputs' task metric, else output cosine; None when no algorithm has scales."""
    batches = HeldOutBatches(config, images)
    count = batches.count
    input_name = config.image_input.name
    reference = run(OnnxRunner(config.model_path), input_name, batches, count)
    specs = declared_outputs(config, reference)
    model = load_onnx(config.model_path)
    scores: dict[Algorithm, Agreement] = {}
    unscored: dict[Algorithm, str] = {}
    for algorithm in ALGORITHMS:
        try:
            scales = calibrated.scales(algorithm)
        except TrtqError as exc:
            unscored[algorithm] = str(exc)
            continue
        qdq = export_qdq(model, scales, config.spec.qdq.exclude).model
        scores[algorithm] = agreement(specs, reference, run(OnnxRunner(qdq), input_name, batches, count))
    return Evaluation(scores, count, where, unscored) if scores else None


def describe_holdout(held: int, calibrated: int) -> str:
    return f"the last {counted(held, 'image')} of the list (calibrated on the {calibrated} before)"
