"""The JSON files ``trtq report`` takes from other commands, checked before the calibration pass.

A wrong file (another command's JSON, a hand-edited one) is named with what was expected in it,
instead of failing on a missing key halfway through the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from trtq.errors import TrtqError


class _Json(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class SensitivityRow(_Json):
    tensor: str
    alone: float
    all_but: float
    consumers: list[str]


class SensitivityJson(_Json):
    full_int8: float
    weights_only: float
    with_proposal: float
    proposal: list[str]
    ranking: list[SensitivityRow]


class LatencySummary(_Json):
    median: float
    percentiles: dict[str, float]


class BenchMetrics(_Json):
    latency: LatencySummary


class BenchEntry(_Json):
    target: str
    backend: str
    throughput_qps: float
    metrics_ms: BenchMetrics
    latency_samples_ms: list[float] = []


class TuneStep(_Json):
    step: str
    relative_error: float
    validation_error: float | None = None
    cosine: float
    gain: float
    kept: bool
    seconds: float


class TuneImages(_Json):
    count: int


class BatchesUsed(_Json):
    search: int
    validation: int


class TuneSettingsJson(_Json):
    batches_used: BatchesUsed | None = None
    """Absent in files written before the validation split."""


class TuneJson(_Json):
    tuning_images: TuneImages
    best_single_algorithm: str
    float_layers: list[str]
    steps: list[TuneStep]
    settings: TuneSettingsJson = TuneSettingsJson()
    heldout: dict[str, Any] | None = None


def read_tune(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = _read(path, TypeAdapter(TuneJson), "the tune.json `trtq tune` writes")
    return data


def read_sensitivity(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = _read(
        path, TypeAdapter(SensitivityJson), "the JSON `trtq sensitivity --json` writes"
    )
    return data


def read_bench(path: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = _read(
        path, TypeAdapter(list[BenchEntry]), "the JSON `trtq bench --json` writes"
    )
    return data


def _read(path: Path, adapter: TypeAdapter[Any], expected: str) -> Any:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrtqError(f"{path}: not found (expected {expected})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrtqError(f"{path}: cannot read JSON ({exc}); expected {expected}") from None
    try:
        return _plain(adapter.validate_python(raw))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise TrtqError(f"{path}: {where}: {error['msg']}; expected {expected}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.model_dump() if isinstance(value, BaseModel) else value
