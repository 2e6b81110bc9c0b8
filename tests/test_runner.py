"""The benchmark runner's statistics and loop, against hand-computed values (trtexec's rules)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import WriteConfig
from typer.testing import CliRunner

from trtq.cli.main import app
from trtq.runner.stats import median, percentile, summarize
from trtq.runner.timing import QueryTimes, TimingSettings, analyse, run_timed

TEN = [float(v) for v in range(1, 11)]
HUNDRED = [float(v) for v in range(1, 101)]


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        # float32 (1 - 0.9f) * 10 = 1.0000002 -> 1 value excluded -> 9 (float64 would give 10)
        (TEN, 90, 9.0),
        (TEN, 95, 10.0),  # (1 - 0.95f) * 10 = 0.49999997 -> 0 excluded
        (TEN, 50, 5.0),  # 5 excluded -> index 4
        (HUNDRED, 99, 100.0),  # (1 - 0.99f) * 100 = 0.99999905 -> 0 excluded (float64: 1)
        (HUNDRED, 90, 90.0),  # (1 - 0.9f) * 100 = 10.000002 -> 10 excluded -> index 89
        (HUNDRED, 0, 1.0),
        (HUNDRED, 100, 100.0),
        ([7.0], 99, 7.0),
    ],
)
def test_trtexec_percentile_rule(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == expected


def test_median_and_summary() -> None:
    assert median(TEN) == 5.5
    assert median([1.0, 2.0, 4.0]) == 2.0
    summary = summarize([4.0, 2.0, 2.0, 4.0], [50.0])
    assert (summary.minimum, summary.maximum, summary.mean, summary.median) == (2.0, 4.0, 3.0, 3.0)
    assert summary.cov_percent == pytest.approx(100 / 3)  # population std 1, mean 3
    with pytest.raises(ValueError):
        percentile(TEN, 101)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeBackend:
    """Each query takes 10 ms of fake time: 1 ms H2D, 8 ms compute, 1 ms D2H; enqueue 7 ms."""

    name = "fake"
    batch_size = 4

    def __init__(self, clock: FakeClock, compute: list[float] | None = None) -> None:
        self.input_shapes = {"x": [4, 3, 8, 8]}
        self.warnings: list[str] = []
        self.clock = clock
        self.calls = 0
        self.compute = compute

    def query(self) -> QueryTimes:
        compute = self.compute[self.calls % len(self.compute)] if self.compute else 8.0
        self.calls += 1
        self.clock.now += 0.010
        return QueryTimes(compute_ms=compute, h2d_ms=1.0, d2h_ms=1.0, enqueue_ms=7.0)


def test_time_based_warmup_and_duration() -> None:
    clock = FakeClock()
    backend = FakeBackend(clock)
    trace = run_timed(backend, TimingSettings(warmup_ms=25, duration_s=0.1, iterations=5), clock)
    # queries start at 0, 10, 20 ms (warm-up), then 30 .. 120 ms until 125 ms have passed
    assert trace.warmup_queries == 3
    assert trace.warmup_ms == pytest.approx(30.0)  # "warm-up completed 3 queries over 30 ms", as trtexec says
    assert len(trace.queries) == 10
    assert backend.calls == 13
    assert trace.walltime_s == pytest.approx(0.100)
    result = analyse("fake", backend, trace, (90.0,))
    assert result.throughput_qps == pytest.approx(100.0)
    assert result.metrics["latency"].median == 10.0
    assert result.to_json()["throughput_images_per_s"] == pytest.approx(400.0)


def test_minimum_iterations_outlast_the_duration() -> None:
    clock = FakeClock()
    trace = run_timed(FakeBackend(clock), TimingSettings(warmup_ms=0, duration_s=0.001, iterations=50), clock)
    assert len(trace.queries) == 50 and trace.warmup_queries == 0


def test_warnings_for_enqueue_bound_and_unstable_compute() -> None:
    clock = FakeClock()
    backend = FakeBackend(clock, compute=[8.0, 8.0, 8.0, 12.0])
    trace = run_timed(backend, TimingSettings(warmup_ms=0, duration_s=0.05, iterations=8), clock)
    warnings = analyse("fake", backend, trace, (90.0,)).warnings
    assert any("enqueue" in w for w in warnings)  # 7 ms > 0.8 * 8 ms
    assert any("unstable" in w for w in warnings)  # CoV of [8, 8, 8, 12] is 19%


def test_bench_command_on_onnxruntime(write_config: WriteConfig, tmp_path: Path) -> None:
    config = write_config(n_images=2)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            str(config),
            "--backend",
            "onnxruntime",
            "--warmup-ms",
            "20",
            "--duration-s",
            "0.2",
            "--iterations",
            "5",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    (report,) = json.loads(out.read_text())
    assert report["backend"] == "onnxruntime" and report["batch_size"] == 2
    assert report["queries"] >= 5
    latency = report["metrics_ms"]["latency"]
    assert 0 < latency["min"] <= latency["median"] <= latency["percentiles"]["99"] <= latency["max"]
    assert report["throughput_qps"] == pytest.approx(report["queries"] / report["walltime_s"])
    assert "h2d" not in report["metrics_ms"]


def test_bench_dynamic_model_without_shape_is_a_clear_error(
    classifier_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # bench's default JSON goes under the working folder, not the repo's
    result = CliRunner().invoke(app, ["bench", str(classifier_path), "--duration-s", "0.1"])
    assert result.exit_code == 1
    assert "dynamic dims" in result.output and "--shape" in result.output
