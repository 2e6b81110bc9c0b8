"""``trtq calibrate`` ends with where the time went; the stages of the pass add up to its wall time."""

from __future__ import annotations

import re

from conftest import WriteConfig
from typer.testing import CliRunner

from trtq.cli.main import app


def test_calibrate_prints_a_time_breakdown(write_config: WriteConfig) -> None:
    result = CliRunner().invoke(app, ["calibrate", str(write_config(n_images=6))])
    assert result.exit_code == 0, result.output
    total = float(
        re.search(r"6 images in 3 batches, calibration pass ([\d.]+) s \(([\d.]+) images/s\)", result.output)[
            1
        ]
    )  # type: ignore[index]
    line = re.search(r"time: (.*)", result.output)
    assert line is not None, result.output
    stages = dict(re.findall(r"(\w+) ([\d.]+) s", line[1]))
    assert list(stages) == ["decode", "model", "statistics", "thresholds", "evaluation", "writing"]
    # decode, model and statistics split the pass the summary line times (each rounded to 0.1 s)
    pass_stages = sum(float(stages[s]) for s in ("decode", "model", "statistics"))
    assert abs(pass_stages - total) <= 0.2
