"""trtexec's measurement loop, shared by every backend.

Queries run while fewer than ``iterations`` have been measured or less than warm-up + duration has
passed; queries that start inside the warm-up window are dropped (time-based warm-up). Latency is
H2D + compute + D2H, as trtexec reports it, not host end-to-end time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trtq.runner.stats import Summary, summarize

Clock = Callable[[], float]
ENQUEUE_BOUND = 0.8
UNSTABLE_COV_PERCENT = 2.5


@dataclass(frozen=True)
class QueryTimes:
    """One inference, in milliseconds; None where a backend has no such phase (ONNX Runtime on CPU)."""

    compute_ms: float
    h2d_ms: float | None = None
    d2h_ms: float | None = None
    enqueue_ms: float | None = None

    @property
    def latency_ms(self) -> float:
        return (self.h2d_ms or 0.0) + self.compute_ms + (self.d2h_ms or 0.0)


class Backend(Protocol):
    name: str
    batch_size: int
    input_shapes: dict[str, list[int]]
    """The shape of every input as timed, by name."""
    warnings: list[str]
    """What the backend changed from the settings asked for (e.g. no CUDA graph), for the report."""

    def query(self) -> QueryTimes:
        """Run one inference and time its phases."""


@dataclass(frozen=True)
class TimingSettings:
    warmup_ms: float = 200.0
    duration_s: float = 3.0
    iterations: int = 10
    percentiles: Sequence[float] = (90.0, 95.0, 99.0)


@dataclass
class Trace:
    queries: list[QueryTimes] = field(default_factory=list)
    warmup_queries: int = 0
    warmup_ms: float = 0.0
    walltime_s: float = 0.0
    """From the start of the first measured query to the end of the last."""


def run_timed(backend: Backend, settings: TimingSettings, clock: Clock = time.perf_counter) -> Trace:
    trace = Trace()
    start = clock()
    measured_from: float | None = None
    last_end = start
    while True:
        elapsed_ms = (clock() - start) * 1e3
        if (
            len(trace.queries) >= settings.iterations
            and elapsed_ms >= settings.warmup_ms + settings.duration_s * 1e3
        ):
            break
        query_start = clock()
        times = backend.query()
        last_end = clock()
        if (query_start - start) * 1e3 < settings.warmup_ms:
            trace.warmup_queries += 1
            trace.warmup_ms = (last_end - start) * 1e3
            continue
        if measured_from is None:
            measured_from = query_start
        trace.queries.append(times)
    trace.walltime_s = last_end - (measured_from if measured_from is not None else start)
    return trace


@dataclass(frozen=True)
class BenchResult:
    target: str
    backend: str
    batch_size: int
    trace: Trace
    metrics: dict[str, Summary]
    warnings: list[str]
    input_shapes: dict[str, list[int]] = field(default_factory=dict)

    @property
    def throughput_qps(self) -> float:
        return len(self.trace.queries) / self.trace.walltime_s if self.trace.walltime_s > 0 else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "backend": self.backend,
            "batch_size": self.batch_size,
            "input_shapes": self.input_shapes,
            "queries": len(self.trace.queries),
            "warmup_queries": self.trace.warmup_queries,
            "warmup_ms": self.trace.warmup_ms,
            "walltime_s": self.trace.walltime_s,
            "throughput_qps": self.throughput_qps,
            "throughput_images_per_s": self.throughput_qps * self.batch_size,
            "metrics_ms": {name: summary.to_json() for name, summary in self.metrics.items()},
            "latency_samples_ms": [q.latency_ms for q in self.trace.queries],
            "warnings": self.warnings,
        }


def analyse(target: str, backend: Backend, trace: Trace, percentiles: Sequence[float]) -> BenchResult:
    """Summaries per phase and trtexec's warnings."""
    queries = trace.queries
    columns: dict[str, list[float | None]] = {
        "latency": [q.latency_ms for q in queries],
        "enqueue": [q.enqueue_ms for q in queries],
        "h2d": [q.h2d_ms for q in queries],
        "compute": [q.compute_ms for q in queries],
        "d2h": [q.d2h_ms for q in queries],
    }
    metrics = {
        name: summarize([v for v in values if v is not None], percentiles)
        for name, values in columns.items()
        if values and all(v is not None for v in values)
    }
    warnings = list(backend.warnings)
    compute = metrics["compute"]
    if "enqueue" in metrics and metrics["enqueue"].median > ENQUEUE_BOUND * compute.median:
        warnings.append(
            f"median enqueue time {metrics['enqueue'].median:.3f} ms is over {ENQUEUE_BOUND:.0%} of median "
            f"compute {compute.median:.3f} ms: the host may be the bottleneck (try benchmark.cuda_graph)"
        )
    if (
        "h2d" in metrics
        and "d2h" in metrics
        and metrics["h2d"].median + metrics["d2h"].median > compute.median
    ):
        warnings.append("H2D + D2H take longer than compute: throughput may be bound by data transfers")
    if compute.cov_percent > UNSTABLE_COV_PERCENT:
        warnings.append(
            f"compute time is unstable (coefficient of variation {compute.cov_percent:.1f}% > "
            f"{UNSTABLE_COV_PERCENT}%): lock clocks, use spin-wait or run longer"
        )
    return BenchResult(
        target, backend.name, backend.batch_size, trace, metrics, warnings, dict(backend.input_shapes)
    )
