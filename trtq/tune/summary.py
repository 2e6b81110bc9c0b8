"""tune.json: what ``trtq tune`` did, written and read here (``trtq report --tune`` reads it back).

Non-finite numbers are written as null (trtq/fileio.write_json) and read back as nan.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from trtq.fileio import JsonRecord, Number, read_json
from trtq.tune.heldout import HeldOut
from trtq.tune.outputs import TunePaths
from trtq.tune.pipeline import TuneResult, TuneSettings


def tune_summary(
    config: Path,
    tune_images: Path,
    images: int,
    settings: TuneSettings,
    batch_size: int,
    result: TuneResult,
    paths: TunePaths,
) -> dict[str, Any]:
    """tune.json's content for one run, but the held-out part and the total seconds."""
    return {
        "config": str(config),
        "tuning_images": {"list": str(tune_images), "count": images},
        "settings": {
            "max_float_layers": settings.max_float_layers,
            "conv_gemm_layers": result.conv_layers,
            "target_cosine": settings.target_cosine,
            "search_batches": settings.search_batches,
            "validation_batches": settings.validation_batches,
            "search_seconds": settings.time_limit_s,
            "batch_size": batch_size,
            "batches_used": result.split,
        },
        "steps": [step.to_json() for step in result.steps],
        "timings": result.timings,
        "best_single_algorithm": result.best_algorithm,
        "float_layers": result.float_nodes,
        "thresholds": {t: {"scale": result.scales[t], "from": label} for t, label in result.labels.items()},
        "outputs": {
            "qdq": str(paths.qdq),
            "corrected_fp32": str(paths.corrected),
            "cache": str(paths.cache),
            "config": str(paths.config),
        },
    }


def heldout_summary(images: Path, shared: Sequence[str], heldout: HeldOut) -> dict[str, Any]:
    """tune.json's ``heldout``: plain and tuned INT8 against FP32 on images tuning never saw."""
    return {
        "list": str(images),
        "samples": heldout.samples,
        "overlapping_images": list(shared),
        "results": {label: [m.to_json() for m in values] for label, values in heldout.outputs.items()},
        "agreement": {label: value.to_json() for label, value in heldout.agreement.items()},
    }


class TuneStep(JsonRecord):
    step: str
    relative_error: Number
    validation_error: float | None = None
    task_agreement: float | None = None
    """Absent in files written before tune was judged by the task metric, and without one."""
    validation_task_agreement: float | None = None
    cosine: Number
    gain: Number
    kept: bool
    seconds: Number


class TuneImages(JsonRecord):
    count: int


class BatchesUsed(JsonRecord):
    search: int
    validation: int


class TuneSettingsJson(JsonRecord):
    batches_used: BatchesUsed | None = None
    """Absent in files written before the validation split."""


class HeldoutMetrics(JsonRecord):
    output: str
    cosine: Number
    top1_agreement: float | None = None
    top5_agreement: float | None = None


class HeldoutAgreement(JsonRecord):
    agreement: Number
    metric: str


class Heldout(JsonRecord):
    samples: int
    results: dict[str, list[HeldoutMetrics]]
    agreement: dict[str, HeldoutAgreement] | None = None
    """Absent in files written before tune was judged by the task metric."""


class TuneJson(JsonRecord):
    tuning_images: TuneImages
    best_single_algorithm: str
    float_layers: list[str]
    steps: list[TuneStep]
    settings: TuneSettingsJson = TuneSettingsJson()
    heldout: Heldout | None = None


def read_tune(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = read_json(path, TypeAdapter(TuneJson), "the tune.json `trtq tune` writes")
    return data
