"""Whole-model calibration, side by side: trtq, its floor, and ONNX Runtime's quantize_static.

Every method runs in its own process on the same images (same list, decoding threads and
preprocessing: trtq's BatchSource) and reports wall time, peak resident memory (ru_maxrss) and where
the time went. Methods:

- ``floor``: decode + preprocess + the FP32 model in ONNX Runtime with every calibrated tensor
  exposed (trtq's own session: same options) + max|x| of each tensor (NumPy, one thread), the
  issue's floor. ``floor-threaded``: the same with the tensors' max|x| spread over one thread per
  usable core, as trtq spreads its binning. ``floor-spinning``, ``trtq-spinning``: the same with
  ONNX Runtime's default of spinning threads, which trtq turns off.
- ``trtq``: what ``trtq calibrate`` does: histograms, all four algorithms' thresholds for every tensor,
  cache, manifest and report.
- ``trtq-base``: the same from another checkout (``--baseline DIR``, commit 3020b70 or later), for
  before/after in one run.
- ``ort-minmax``: ``onnxruntime.quantization.quantize_static`` with MinMax, end to end (writes the
  QDQ model). ``ort-entropy``/``ort-percentile``: its calibrators' collect + compute steps, which keep
  every activation in memory (a few images only).

Models: the demo detector (configs/demo.yaml, 640x640, batch 1) and the EfficientNet-Lite0
classifier (224x224, batch 8) made by ``python benchmarks/classifier.py out/classifier``; its
calibration list is repeated in order up to ``--classifier-images``. Repeats run interleaved (the
method order rotates) so machine load hits every side alike; the table shows medians and ranges.

    python benchmarks/calibration.py [--models classifier demo] [--repeats 3] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
METHODS = (
    "floor",
    "floor-spinning",
    "floor-threaded",
    "trtq",
    "trtq-spinning",
    "trtq-base",
    "ort-minmax",
    "ort-entropy",
    "ort-percentile",
)
STAGES = ("decode", "model", "statistics", "thresholds", "writing")


def write_job(model: str, images: int, classifier_dir: Path, work: Path) -> Path:
    """A config whose outputs go to ``work`` and whose list holds ``images`` entries (list repeated)."""
    from trtq.config import load_config
    from trtq.data.from_config import calibration_entries

    source = (
        REPO / "configs" / "demo.yaml" if model == "demo" else classifier_dir / "efficientnet_lite0_b8.yaml"
    )
    loaded = load_config(source)
    listed = [str(entry.path) for entry in calibration_entries(loaded)]
    listed = (listed * (-(-images // len(listed))))[:images]
    (work / f"{model}.txt").write_text("\n".join(listed) + "\n")
    config = yaml.safe_load(source.read_text())
    config["model"]["path"] = str(loaded.model_path)
    config["calibration"]["images"] = str(work / f"{model}.txt")
    config["calibration"]["cache"] = str(work / f"{model}.cache")
    config.pop("build", None)
    path = work / f"{model}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class StageClock:
    """Seconds spent waiting for decoded batches and inside ONNX Runtime, measured from outside trtq
    (so a checkout without trtq's own timers is profiled the same way)."""

    def __init__(self) -> None:
        import onnxruntime as ort

        from trtq.data.batches import BatchSource

        self.seconds = dict.fromkeys(STAGES, 0.0)
        original_run = ort.InferenceSession.run
        original_iter = BatchSource.__iter__
        clock = self

        def timed_run(session: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original_run(session, *args, **kwargs)
            finally:
                clock.seconds["model"] += time.perf_counter() - start

        def timed_iter(source: Any) -> Iterator[Any]:
            batches = original_iter(source)
            while True:
                start = time.perf_counter()
                batch = next(batches, None)
                clock.seconds["decode"] += time.perf_counter() - start
                if batch is None:
                    return
                yield batch

        ort.InferenceSession.run = timed_run  # type: ignore[method-assign]
        BatchSource.__iter__ = timed_iter  # type: ignore[method-assign]

    def stage(self, name: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = work()
        self.seconds[name] += time.perf_counter() - start
        return result


def run_floor(config_path: Path, clock: StageClock, threads: int = 1) -> int:
    """The floor; with ``threads`` > 1 the batch's tensors are reduced on that many threads (NumPy
    releases the GIL in its reductions), as trtq spreads its binning over the cores."""
    from concurrent.futures import ThreadPoolExecutor

    from trtq.calib.collect import ActivationCollector
    from trtq.config import load_config
    from trtq.data.from_config import batch_source, calibration_entries

    def max_abs(values: Any) -> float:
        return max(float(values.max()), -float(values.min()))

    config = load_config(config_path)
    collector = ActivationCollector(config.model_path, config.image_input.name, config.calibration_shape)
    maxima: dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for batch in batch_source(config, calibration_entries(config)):
            activations = list(collector.run(batch.data))
            start = time.perf_counter()
            spread = pool.map if threads > 1 else map  # one thread: no pool overhead in the floor
            found = spread(max_abs, [values for _, values in activations])
            for (name, _), top in zip(activations, found, strict=True):
                maxima[name] = max(maxima.get(name, 0.0), top)
            del activations  # before the next batch runs, as trtq does
            clock.seconds["statistics"] += time.perf_counter() - start
    return len(maxima)


def run_trtq(config_path: Path, clock: StageClock) -> int:
    """``trtq calibrate``'s job (trtq.calibrate.pipeline.calibrate), its stages timed."""
    from trtq.calibrate.pipeline import calibrate
    from trtq.config import load_config

    run, _ = calibrate(load_config(config_path))
    if not {"thresholds", "writing"} <= set(getattr(run, "timings", {})):
        raise SystemExit("--baseline: needs a checkout whose calibrate job times its stages (3020b70 on)")
    # decode and model are timed from outside (the same way on any checkout); the pass's remainder
    # is statistics; thresholds and writing are trtq's own timers around those steps.
    clock.seconds["statistics"] = run.seconds - clock.seconds["decode"] - clock.seconds["model"]
    clock.seconds["thresholds"] = run.timings["thresholds"]
    clock.seconds["writing"] = run.timings["writing"]
    return len(run.histograms)


def run_ort(method: str, config_path: Path, work: Path) -> int:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator

    from trtq.config import load_config
    from trtq.data.from_config import batch_source, calibration_entries

    config = load_config(config_path)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter(batch_source(config, calibration_entries(config)))

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {config.image_input.name: batch.data}

    if method == "ort-minmax":
        quantize_static(
            str(config.model_path),
            str(work / "quantized.onnx"),
            Reader(),
            calibrate_method=CalibrationMethod.MinMax,
        )
        import onnx

        model = onnx.load(str(work / "quantized.onnx"))
        return sum(node.op_type == "QuantizeLinear" for node in model.graph.node)
    calibrator = create_calibrator(
        str(config.model_path),
        None,
        str(work / "augmented.onnx"),
        calibrate_method={
            "ort-entropy": CalibrationMethod.Entropy,
            "ort-percentile": CalibrationMethod.Percentile,
        }[method],
    )
    calibrator.collect_data(Reader())
    return len(calibrator.compute_data().data)


def allow_spinning() -> None:
    """ONNX Runtime's default: its threads spin after a run (trtq's calibration session turns that off)."""
    import onnxruntime as ort

    original = ort.SessionOptions.add_session_config_entry

    def keep_default(options: Any, key: str, value: str) -> None:
        if key != "session.intra_op.allow_spinning":
            original(options, key, value)

    ort.SessionOptions.add_session_config_entry = keep_default  # type: ignore[method-assign]


def run_one(method: str, config_path: Path) -> dict[str, Any]:
    """Runs in the child process: one method, then its time, peak RSS and stage times."""
    start = time.perf_counter()
    profile: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if method.startswith("ort-"):
            tensors = run_ort(method, config_path, Path(tmp))
        else:
            clock = StageClock()
            if method.endswith("-spinning"):
                allow_spinning()
            if method == "floor-threaded":
                from trtq.calib.run import HISTOGRAM_THREADS

                tensors = run_floor(config_path, clock, threads=HISTOGRAM_THREADS)
            else:
                tensors = (run_floor if method.startswith("floor") else run_trtq)(config_path, clock)
            profile = {stage: round(seconds, 3) for stage, seconds in clock.seconds.items()}
    return {
        "method": method,
        "seconds": time.perf_counter() - start,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tensors": tensors,
        "profile": profile,
    }


def child(method: str, config: Path, baseline: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if method == "trtq-base":
        if baseline is None:
            return {"method": method, "error": "needs --baseline DIR"}
        env["PYTHONPATH"] = f"{baseline}{os.pathsep}{Path(__file__).parent}"
    else:
        env["PYTHONPATH"] = f"{REPO}{os.pathsep}{Path(__file__).parent}"
    done = subprocess.run(
        [sys.executable, __file__, "--child", method, str(config)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        return {"method": method, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def spread(values: list[float], digits: int = 1) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def summarise(results: list[dict[str, Any]], models: list[str], methods: list[str], machine: str) -> None:
    table = Table(title=f"Calibration, medians (range) over repeats: {machine}")
    for column in ("model", "method", "images", "seconds", "x floor", "peak MiB", "x floor", "tensors"):
        table.add_column(column, justify="left" if column in ("model", "method") else "right")
    profile = Table(title="Where the time goes (median seconds)")
    for column in ("model", "method", *STAGES):
        profile.add_column(column, justify="left" if column in ("model", "method") else "right")
    for model in models:
        rows = [r for r in results if r["model"] == model]
        floor = {r["repeat"]: r for r in rows if r["method"] == "floor" and "error" not in r}
        for method in methods:
            done = [r for r in rows if r["method"] == method and "error" not in r]
            if not done:
                failed = [r for r in rows if r["method"] == method]
                table.add_row(
                    model, method, "", "failed", "", "", "", failed[0]["error"][:40] if failed else ""
                )
                continue
            # Ratios pair each run with the floor of the same repeat (same load).
            time_ratio = [r["seconds"] / floor[r["repeat"]]["seconds"] for r in done if r["repeat"] in floor]
            rss_ratio = [r["peak_mib"] / floor[r["repeat"]]["peak_mib"] for r in done if r["repeat"] in floor]
            table.add_row(
                model,
                method,
                str(done[0]["images"]),
                spread([r["seconds"] for r in done]),
                spread(time_ratio, 2),
                spread([r["peak_mib"] for r in done], 0),
                spread(rss_ratio, 2),
                str(done[0]["tensors"]),
            )
            if done[0]["profile"]:
                medians = [statistics.median(r["profile"][stage] for r in done) for stage in STAGES]
                profile.add_row(model, method, *(f"{m:.2f}" for m in medians))
    console = Console(width=150)
    console.print(table)
    console.print(profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["classifier", "demo"], choices=["classifier", "demo"])
    parser.add_argument("--methods", nargs="+", default=["floor", "trtq", "ort-minmax"], choices=METHODS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--classifier", type=Path, default=REPO / "out" / "classifier", help="classifier.py's OUT"
    )
    parser.add_argument("--classifier-images", type=int, default=480)
    parser.add_argument("--demo-images", type=int, default=26)
    parser.add_argument("--baseline", type=Path, help="another trtq checkout, run as method trtq-base")
    parser.add_argument("--json", type=Path, default=Path("out/bench/calibration.json"))
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], Path(args.child[1]))))
        return

    from common import machine

    methods: list[str] = args.methods
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        images = {"classifier": args.classifier_images, "demo": args.demo_images}
        jobs = {model: write_job(model, images[model], args.classifier, Path(tmp)) for model in args.models}
        for repeat in range(args.repeats):
            order = methods[repeat % len(methods) :] + methods[: repeat % len(methods)]
            for model in args.models:
                for method in order:
                    result = child(method, jobs[model], args.baseline)
                    result.update(model=model, repeat=repeat, images=images[model], load=os.getloadavg()[0])
                    results.append(result)
                    print(json.dumps(result), file=sys.stderr)
    summarise(results, args.models, methods, machine())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
