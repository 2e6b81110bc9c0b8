"""trtq report: one self-contained HTML file whose PNG plots and tables cover each part asked for."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

from conftest import REPO, TEXT_CLASSIFIER, WriteConfig, hand_made_minmax_cache, oracle_tensors
from typer.testing import CliRunner

from trtq.cli.main import app
from trtq.compare.sensitivity import SensitivityResult, TensorSensitivity
from trtq.resources import resolve_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_with_crosscheck_sensitivity_and_latency(write_config: WriteConfig, tmp_path: Path) -> None:
    runner = CliRunner()
    config = write_config(n_images=4)
    bench = tmp_path / "bench.json"
    assert (
        runner.invoke(
            app,
            ["bench", str(config), "--backend", "onnxruntime", "--duration-s", "0.2", "--json", str(bench)],
        ).exit_code
        == 0
    )
    sensitivity = tmp_path / "sensitivity.json"
    ranking = [
        TensorSensitivity("relu_4.tmp_0", 0.86, 0.99, ["Conv@8"]),
        TensorSensitivity("x", 0.999, 0.9, ["Conv@0"]),
    ]
    result = SensitivityResult(
        full_int8=0.88, weights_only=0.999, ranking=ranking, proposal=["Conv@8"], with_proposal=0.94
    )
    sensitivity.write_text(json.dumps(result.to_json()))
    out = tmp_path / "report.html"
    tensors = oracle_tensors(resolve_path(TEXT_CLASSIFIER, REPO))
    cache = hand_made_minmax_cache(config.parent, 4, {tensors[2]: 1.3, tensors[5]: 0.95})
    invoked = runner.invoke(
        app,
        [
            "report",
            str(config),
            "-o",
            str(out),
            "--cache",
            str(cache),
            "--sensitivity",
            str(sensitivity),
            "--bench",
            str(bench),
            "--top",
            "3",
        ],
    )
    assert invoked.exit_code == 0, invoked.output
    page = out.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3 + 3  # 3 tensors, then cross-check, sensitivity and latency
    assert all(base64.b64decode(data).startswith(PNG_MAGIC) for data in images)
    for heading in (
        "Calibration: why each tensor got its scale",
        "Cross-check: trt.cache vs NumPy minmax",
        "Sensitivity",
        "Latency",
    ):
        assert f"<h2>{heading}</h2>" in page
    # Scales computed by hand, one 30% and one 5% off: the rest agree, 1 of n is outside 10%.
    n = len(tensors)
    summary = re.search(
        r"(\d+) tensors compared: median \|log ratio\| (\S+), (\S+)% within 1%, (\S+)% within 10%", page
    )
    assert summary is not None
    assert int(summary[1]) == n and float(summary[2]) < 1e-5
    assert (summary[3], summary[4]) == (f"{100 * (n - 2) / n:.1f}", f"{100 * (n - 1) / n:.1f}")
    assert "1 only in the cache" in page
    assert "relu_4.tmp_0" in page and "Conv@8" in page
    assert all(f"<td>{name}</td>" in page for name in tensors)  # in the thresholds table
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched


def test_json_inputs_read_null_numbers_as_nan(tmp_path: Path) -> None:
    """trtq writes a non-finite number as null (one JSON writer); the report reads it back as nan."""
    from trtq.report.inputs import read_bench, read_sensitivity

    sensitivity = tmp_path / "s.json"
    row = {"tensor": "t", "alone": None, "all_but": 0.5, "consumers": []}
    sensitivity.write_text(
        json.dumps(
            {"full_int8": None, "weights_only": 1.0, "with_proposal": 1.0, "proposal": [], "ranking": [row]}
        )
    )
    read = read_sensitivity(sensitivity)
    assert math.isnan(read["full_int8"]) and math.isnan(read["ranking"][0]["alone"])
    bench = tmp_path / "b.json"
    latency = {"median": 1.0, "percentiles": {"99": None}}
    bench.write_text(
        json.dumps(
            [{"target": "m", "backend": "b", "throughput_qps": None, "metrics_ms": {"latency": latency}}]
        )
    )
    assert math.isnan(read_bench(bench)[0]["metrics_ms"]["latency"]["percentiles"]["99"])


def _tune_json(tmp_path: Path, tensors: list[str]) -> Path:
    """A tune.json as trtq tune writes it, cut by the time limit, with thresholds for ``tensors``."""
    step = {"step": "thresholds: per-tensor search", "relative_error": 0.01, "cosine": 0.99, "gain": 0.0}
    data = {
        "config": "model.yaml",
        "tuning_images": {"count": 4},
        "best_single_algorithm": "mse",
        "float_layers": [],
        "steps": [
            {**step, "kept": True, "seconds": 1.0, "time_limit_note": "the time limit stopped the search"}
        ],
        "thresholds": {t: {"scale": 0.01, "from": "mse"} for t in tensors},
    }
    path = tmp_path / "tuned.tune.json"
    path.write_text(json.dumps(data))
    return path


def test_report_shows_what_the_time_limit_left_out_and_refuses_another_models_tune(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    config = write_config(n_images=2)
    tensors = oracle_tensors(resolve_path(TEXT_CLASSIFIER, REPO))
    out = tmp_path / "report.html"
    ours = CliRunner().invoke(
        app, ["report", str(config), "-o", str(out), "--tune", str(_tune_json(tmp_path, tensors[:3]))]
    )
    assert ours.exit_code == 0, ours.output
    assert "the time limit stopped the search" in out.read_text()
    other = _tune_json(tmp_path, ["images", "/model.22/Concat_output_0"])  # a YOLOv8n's tensors
    refused = CliRunner().invoke(app, ["report", str(config), "-o", str(out), "--tune", str(other)])
    assert refused.exit_code == 1
    assert "written for another model (model.yaml): 2 of its 2 tensors are not in" in refused.output
