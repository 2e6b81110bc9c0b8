"""`trtq calibrate` warns when histogram ranges doubled on many tensors (small batches, unlucky order)."""

from __future__ import annotations

import re

import numpy as np
from conftest import WriteConfig
from typer.testing import CliRunner

from trtq.calib.collect import ActivationCollector
from trtq.cli.main import app
from trtq.config import load_config
from trtq.data.from_config import batch_source, calibration_entries


def doubled_by_hand(config_path: object) -> tuple[int, int]:
    """Tensors whose max |x| in a later batch exceeds the first batch's (TensorRT then doubles the range)."""
    config = load_config(config_path)  # type: ignore[arg-type]
    collector = ActivationCollector(config.model_path, config.image_input.name, config.calibration_shape)
    maxima: dict[str, list[float]] = {}
    for batch in batch_source(config, calibration_entries(config)):
        for name, value in collector.run(batch.data):
            maxima.setdefault(name, []).append(float(np.abs(value).max()))
    doubled = sum(1 for m in maxima.values() if m[0] > 0 and max(m[1:], default=0.0) > m[0])
    return doubled, len(maxima)


def test_warns_with_the_share_of_doubled_tensors(write_config: WriteConfig) -> None:
    config = write_config(n_images=8)  # batch 2: four batches of different photos
    doubled, total = doubled_by_hand(config)
    assert doubled > total / 4
    result = CliRunner().invoke(app, ["calibrate", str(config)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    match = re.search(r"range doubled after the first batch on (\d+) of (\d+) tensors", text)
    assert match is not None, text
    assert (int(match[1]), int(match[2])) == (doubled, total)
    assert "larger batch" in text and "shuffle" in text


def test_one_batch_never_warns(write_config: WriteConfig) -> None:
    config = write_config(n_images=2)  # a single batch: nothing can exceed the first batch
    assert doubled_by_hand(config)[0] == 0
    result = CliRunner().invoke(app, ["calibrate", str(config)])
    assert result.exit_code == 0, result.output
    assert "range doubled" not in result.output


def test_minmax_never_warns(write_config: WriteConfig) -> None:
    config = write_config(n_images=8, algorithm="minmax")  # the same doublings, but minmax reads max |x|
    assert doubled_by_hand(config)[0] > 0
    result = CliRunner().invoke(app, ["calibrate", str(config)])
    assert result.exit_code == 0, result.output
    assert "range doubled" not in result.output
