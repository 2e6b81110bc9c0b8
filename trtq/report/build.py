"""What goes into ``trtq report``: calibration (per tensor), cross-check, sensitivity, latency."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from trtq import __version__
from trtq.cache.headers import algorithm_for_header
from trtq.cache.trt_format import read_cache
from trtq.calib.entropy import entropy_threshold
from trtq.calib.run import CalibrationRun
from trtq.compare.scales import cross_check
from trtq.config import ALGORITHMS, Algorithm
from trtq.config.loader import LoadedConfig
from trtq.errors import TrtqError
from trtq.report.html import HtmlReport
from trtq.report.inputs import read_bench, read_sensitivity
from trtq.text import counted, fixed_or_dash
from trtq.tune.summary import read_tune


def _plots() -> ModuleType:
    """The figures module, imported when a report is drawn: Matplotlib costs every other command
    a quarter of a second at start-up (and warns where HOME is not writable)."""
    from trtq.report import plots

    return plots


def report_html(
    config: LoadedConfig,
    run: CalibrationRun,
    tensors: int,
    cache: Path | None = None,
    sensitivity: Path | None = None,
    bench: Path | None = None,
    tune: Path | None = None,
) -> str:
    tuned = None if tune is None else _tune_for(read_tune(tune), tune, run, config)
    page = HtmlReport(f"trtq report: {config.model_path.name}")
    page.paragraph(
        f"Config {config.source}; {counted(run.stats.used, 'calibration image')} in "
        f"{counted(run.stats.batches, 'batch')} of "
        f"{config.batch_size}; {len(run.histograms)} activations; trtq {__version__}."
    )
    _calibration(page, run, tensors)
    if cache is not None:
        _crosscheck(page, run, cache)
    if sensitivity is not None:
        _sensitivity(page, read_sensitivity(sensitivity))
    if bench is not None:
        _latency(page, read_bench(bench))
    if tuned is not None:
        _tune(page, tuned)
    return page.render()


def _calibration(page: HtmlReport, run: CalibrationRun, tensors: int) -> None:
    page.heading("Calibration: why each tensor got its scale")
    clipping = {
        name: float(run.amax(name, "entropy")) / h.max_abs
        for name, h in run.histograms.items()
        if h.max_abs > 0
    }
    chosen = sorted(clipping, key=lambda n: clipping[n])[:tensors]
    page.paragraph(
        f"The {len(chosen)} tensors that entropy calibration clips hardest (entropy amax / max |x|), each "
        "with its |x| histogram, every algorithm's threshold and the KL curve of the entropy search "
        "(computed, as TensorRT's search is, with the zero bin's count replaced by bin 1's, so that the "
        "exact zeros of ReLU-family outputs do not dominate it)."
    )
    rows = []
    for name in sorted(run.histograms, key=lambda n: clipping.get(n, 1.0)):
        histogram = run.histograms[name]
        rows.append(
            [name, f"{histogram.max_abs:.5g}", str(histogram.doublings)]
            + [f"{float(run.amax(name, a)):.5g}" for a in ALGORITHMS]
        )
    for name in chosen:
        amax: dict[str, float] = {a: float(run.amax(name, a)) for a in ALGORITHMS}
        page.image(
            _plots().tensor_figure(name, run.histograms[name], amax, entropy_threshold(run.histograms[name])),
            name,
        )
    page.table(["tensor", "max |x|", "doublings", *[f"{a} amax" for a in ALGORITHMS]], rows)


def _crosscheck(page: HtmlReport, run: CalibrationRun, cache_path: Path) -> None:
    cache = read_cache(cache_path)
    algorithm: Algorithm = algorithm_for_header(cache.algorithm) or "entropy"
    result = cross_check(cache, run.scales(algorithm))
    page.heading(f"Cross-check: {cache_path.name} vs NumPy {algorithm}")
    page.paragraph(result.summary_line() + ".")
    if result.compared:
        page.image(
            _plots().crosscheck_figure(
                [c.cache_scale for c in result.compared], [c.numpy_scale for c in result.compared]
            ),
            "cross-check",
        )
    page.table(
        ["tensor", "cache scale", "NumPy scale", "ratio"],
        [
            [c.tensor, f"{c.cache_scale:.6g}", f"{c.numpy_scale:.6g}", f"{c.ratio:.4f}"]
            for c in result.compared[:20]
        ],
    )


def _sensitivity(page: HtmlReport, data: dict[str, Any]) -> None:
    ranking = data.get("ranking", [])[:30]
    page.heading("Sensitivity")
    page.paragraph(
        f"Output cosine vs FP32: full INT8 {data['full_int8']:.4f}, weights only {data['weights_only']:.4f}, "
        f"with the proposal {data['with_proposal']:.4f} (measured on the images that chose it: optimistic; "
        f"trtq compare on other images tells). Proposal: {', '.join(data['proposal'])}."
    )
    if ranking:
        page.image(
            _plots().sensitivity_figure([r["tensor"] for r in ranking], [1 - r["alone"] for r in ranking]),
            "sensitivity",
        )
    page.table(
        ["tensor", "alone", "all but this", "consumers"],
        [
            [r["tensor"], f"{r['alone']:.4f}", f"{r['all_but']:.4f}", ", ".join(r["consumers"])]
            for r in ranking
        ],
    )


def _latency(page: HtmlReport, results: list[dict[str, Any]]) -> None:
    samples = {f"{Path(r['target']).name} ({r['backend']})": r.get("latency_samples_ms", []) for r in results}
    page.heading("Latency")
    if any(samples.values()):
        page.image(_plots().latency_figure({k: v for k, v in samples.items() if v}), "latency")
    rows = []
    for r in results:
        latency = r["metrics_ms"]["latency"]
        rows.append(
            [Path(r["target"]).name, r["backend"], f"{r['throughput_qps']:.2f}", f"{latency['median']:.3f}"]
            + [f"{v:.3f}" for v in latency["percentiles"].values()]
        )
    keys = list(results[0]["metrics_ms"]["latency"]["percentiles"]) if results else []
    page.table(["target", "backend", "qps", "median ms", *[f"p{k} ms" for k in keys]], rows)


def _tune_for(data: dict[str, Any], path: Path, run: CalibrationRun, config: LoadedConfig) -> dict[str, Any]:
    """tune.json, refused when its thresholds name tensors this config's model does not have: a tune
    of another model would be shown as this one's."""
    foreign = [name for name in data.get("thresholds", {}) if name not in run.histograms]
    if foreign:
        raise TrtqError(
            f"--tune {path}: written for another model ({data.get('config', '?')}): {len(foreign)} of its "
            f"{len(data['thresholds'])} tensors are not in {config.model_path.name} (first: '{foreign[0]}')"
        )
    return data


def _tune(page: HtmlReport, data: dict[str, Any]) -> None:
    page.heading("trtq tune: what each step gained")
    settings = data.get("settings", {})
    floats = data["float_layers"]
    used = settings.get("batches_used")
    split = (
        f" ({used['search']} search and {used['validation']} validation batches of "
        f"{settings.get('batch_size', '?')})"
        if isinstance(used, dict)
        else ""
    )
    page.paragraph(
        f"{data['tuning_images']['count']} tuning images{split}; best single algorithm "
        f"{data['best_single_algorithm']}; {len(floats)} of {settings.get('conv_gemm_layers', '?')} "
        f"Conv/Gemm layers kept in FP16 (budget {settings.get('max_float_layers', '?')}): "
        f"{', '.join(floats) or 'none'}."
    )
    by_task = any(s.get("task_agreement") is not None for s in data["steps"])
    page.table(
        [
            "step",
            *(["task agreement", "validation task"] if by_task else []),
            "relative error",
            "validation error",
            "cosine",
            "gain",
            "kept",
            "seconds",
        ],
        [
            [
                s["step"],
                *(
                    [
                        fixed_or_dash(s.get("task_agreement"), 4),
                        fixed_or_dash(s.get("validation_task_agreement"), 4),
                    ]
                    if by_task
                    else []
                ),
                f"{s['relative_error']:.5f}",
                fixed_or_dash(s.get("validation_error"), 5),
                f"{s['cosine']:.5f}",
                f"{s['gain']:+.5f}",
                "yes" if s["kept"] else "no",
                f"{s['seconds']:.1f}",
            ]
            for s in data["steps"]
        ],
    )
    for step in data["steps"]:  # what the time limit left out (tune.json's note of each step it cut)
        if step.get("time_limit_note"):
            page.paragraph(f"{step['step']}: {step['time_limit_note']}.")
    heldout = data.get("heldout")
    if heldout:
        page.paragraph(f"Held-out images ({heldout['samples']}, {heldout['list']}), against FP32.")
        rows = []
        for label, metrics in heldout["results"].items():
            for m in metrics:
                top1, top5 = m.get("top1_agreement"), m.get("top5_agreement")
                rows.append(
                    [
                        label,
                        m["output"],
                        f"{m['cosine']:.4f}",
                        fixed_or_dash(top1, 3),
                        fixed_or_dash(top5, 3),
                    ]
                )
        page.table(["model", "output", "cosine", "top-1", "top-5"], rows)
        agreement = heldout.get("agreement") or {}
        if agreement:
            page.table(
                ["model", "agreement with FP32", "metric"],
                [[label, f"{a['agreement']:.4f}", a["metric"]] for label, a in agreement.items()],
            )
