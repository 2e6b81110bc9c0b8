"""trtq report: one self-contained HTML file whose PNG plots and tables cover each part asked for."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from conftest import WriteConfig
from typer.testing import CliRunner

from trtq.cli.main import app
from trtq.compare.sensitivity import SensitivityResult, TensorSensitivity

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_with_crosscheck_sensitivity_and_latency(write_config: WriteConfig, tmp_path: Path) -> None:
    runner = CliRunner()
    config = write_config(n_images=4)
    assert runner.invoke(app, ["calibrate", str(config)]).exit_code == 0
    bench = tmp_path / "bench.json"
    assert (
        runner.invoke(
            app, ["bench", str(config), "--backend", "onnxruntime", "--duration", "0.2", "--json", str(bench)]
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
    cache = config.parent / "out" / "model.cache"
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
            "--tensors",
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
        "Cross-check: model.cache vs NumPy entropy",
        "Sensitivity",
        "Latency",
    ):
        assert f"<h2>{heading}</h2>" in page
    assert "100.0% within 1%" in page  # trtq's own cache against its own NumPy scales
    assert "relu_4.tmp_0" in page and "Conv@8" in page
    tensors = len(cache.read_text().splitlines()) - 1
    assert page.count("<tr>") >= tensors  # every tensor's thresholds are in the table
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched
