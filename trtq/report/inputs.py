"""The JSON files ``trtq report`` takes from other commands, checked before the calibration pass.

A wrong file (another command's JSON, a hand-edited one) is named with what was expected in it,
instead of failing on a missing key halfway through the page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from trtq.errors import TrtqError


class _Json(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


def _nan_for_null(value: Any) -> Any:
    return math.nan if value is None else value


Number = Annotated[float, BeforeValidator(_nan_for_null)]
"""trtq writes a non-finite number as null (trtq/fileio.strict_json): read back as nan, shown so."""


class SensitivityRow(_Json):
    tensor: str
    alone: Number
    all_but: Number
    consumers: list[str]


class SensitivityJson(_Json):
    full_int8: Number
    weights_only: Number
    with_proposal: Number
    proposal: list[str]
    ranking: list[SensitivityRow]


class LatencySummary(_Json):
    median: Number
    percentiles: dict[str, Number]


class BenchMetrics(_Json):
    latency: LatencySummary


class BenchEntry(_Json):
    target: str
    backend: str
    throughput_qps: Number
    metrics_ms: BenchMetrics
    latency_samples_ms: list[Number] = []


class TuneStep(_Json):
    step: str
    relative_error: Number
    validation_error: float | None = None
    cosine: Number
    gain: Number
    kept: bool
    seconds: Number


class TuneImages(_Json):
    count: int


class BatchesUsed(_Json):
    search: int
    validation: int


class TuneSettingsJson(_Json):
    batches_used: BatchesUsed | None = None
    """Absent in files written before the validation split."""


class HeldoutMetrics(_Json):
    output: str
    cosine: Number
    top1_agreement: float | None = None
    top5_agreement: float | None = None


class Heldout(_Json):
    samples: int
    results: dict[str, list[HeldoutMetrics]]


class TuneJson(_Json):
    tuning_images: TuneImages
    best_single_algorithm: str
    float_layers: list[str]
    steps: list[TuneStep]
    settings: TuneSettingsJson = TuneSettingsJson()
    heldout: Heldout | None = None


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
