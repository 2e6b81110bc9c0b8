"""The JSON files ``trtq report`` takes from other commands, checked before the calibration pass.

A wrong file (another command's JSON, a hand-edited one) is named with what was expected in it,
instead of failing on a missing key halfway through the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter

from trtq.fileio import JsonRecord, Number, read_json


class SensitivityRow(JsonRecord):
    tensor: str
    alone: Number
    all_but: Number
    consumers: list[str]


class SensitivityJson(JsonRecord):
    full_int8: Number
    weights_only: Number
    with_proposal: Number
    proposal: list[str]
    ranking: list[SensitivityRow]


class LatencySummary(JsonRecord):
    median: Number
    percentiles: dict[str, Number]


class BenchMetrics(JsonRecord):
    latency: LatencySummary


class BenchEntry(JsonRecord):
    target: str
    backend: str
    throughput_qps: Number
    metrics_ms: BenchMetrics
    latency_samples_ms: list[Number] = Field(default_factory=list)


def read_sensitivity(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = read_json(
        path, TypeAdapter(SensitivityJson), "the JSON `trtq sensitivity --json` writes"
    )
    return data


def read_bench(path: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = read_json(
        path, TypeAdapter(list[BenchEntry]), "the JSON `trtq bench --json` writes"
    )
    return data
