"""Tables printed into a pipe (80 columns): long names fold, numbers are never split."""

from __future__ import annotations

import json

from conftest import WriteConfig
from typer.testing import CliRunner

from trtq.cli.main import app


def test_calibrate_summary_keeps_every_number_whole_in_a_narrow_pipe(write_config: WriteConfig) -> None:
    config = write_config(n_images=2, algorithm="minmax")
    result = CliRunner().invoke(app, ["calibrate", str(config), "--top", "12"], env={"COLUMNS": "50"})
    assert result.exit_code == 0, result.output
    report = json.loads((config.parent / "out" / "model.cache.report.json").read_text())
    largest = sorted(report["tensors"].items(), key=lambda item: -item[1]["amax"]["minmax"])[:12]
    tokens = set(result.output.replace("│", " ").split())
    for _, tensor in largest:
        for algorithm in ("entropy", "minmax", "percentile", "mse"):
            shown = f"{tensor['amax'][algorithm]:.5g}"
            assert shown in tokens, (shown, result.output)
    assert max(len(line) for line in result.output.splitlines() if "│" in line) <= 50
