"""The model input's threshold from the preprocessing's range, and thresholds that clip a large share
of a tensor's values reported per tensor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import classifier_config, listed_photos
from test_pipeline import independent_batches

from trtq.cache import read_cache
from trtq.calib import TrtHistogram, amax_entropy, scale_from_amax
from trtq.calib.run import CalibrationRun
from trtq.calibrate.pipeline import calibrate
from trtq.config import load_config
from trtq.config.schema import PreprocessSection
from trtq.data.batches import BatchStats
from trtq.data.preprocess import value_range_amax


def test_value_range_is_the_preprocessing_of_pixels_0_and_255() -> None:
    # (x / 255 - 0.5) / 0.5 maps 0..255 onto -1..1.
    assert value_range_amax(PreprocessSection(scale=1 / 255, mean=[0.5], std=[0.5])) == np.float32(1.0)
    # ImageNet's mean and std: the largest |x| is the blue channel at 255, (1 - 0.406) / 0.225.
    imagenet = PreprocessSection(scale=1 / 255, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    assert float(value_range_amax(imagenet)) == pytest.approx((1 - 0.406) / 0.225, rel=1e-6)
    # A negative std flips the range; a raw 0..255 input keeps 255.
    assert value_range_amax(PreprocessSection(scale=1.0, mean=[0.0], std=[-1.0])) == np.float32(255.0)


def write(tmp: Path, **calibration: object) -> Path:
    (tmp / "images.txt").write_text("\n".join(listed_photos(5)) + "\n")
    path = tmp / "model.yaml"
    path.write_text(yaml.safe_dump(classifier_config("images.txt", "out/model.cache", **calibration)))
    return path


def test_the_input_takes_the_preprocessing_range_under_every_algorithm(tmp_path: Path) -> None:
    _, outputs = calibrate(load_config(write(tmp_path)))
    report = json.loads(outputs.report.read_text())["tensors"]["x"]
    assert report["amax_from"] == "preprocessing"
    assert set(report["amax"].values()) == {1.0}  # pixels 0..255 -> -1..1, whatever the images hold
    assert read_cache(outputs.cache).scales["x"] == float(scale_from_amax(1.0))


def test_input_range_histogram_keeps_tensorrts_own_pick(tmp_path: Path) -> None:
    config = write(tmp_path, input_range="histogram")
    _, outputs = calibrate(load_config(config))
    batches = independent_batches(tmp_path / "images.txt", 2)
    expected = float(scale_from_amax(amax_entropy(batches)))
    assert read_cache(outputs.cache).scales["x"] == pytest.approx(expected, rel=1e-6)
    assert json.loads(outputs.report.read_text())["tensors"]["x"]["amax_from"] == "histogram"


def one_tensor_run(threshold: float) -> CalibrationRun:
    """1000 values at 0.1 and 10 at 1.0: range 1.0; the threshold is set by hand."""
    histogram = TrtHistogram()
    histogram.update(np.array([0.1] * 1000 + [1.0] * 10, dtype=np.float32))
    run = CalibrationRun({"t": histogram}, BatchStats(), 99.99)
    run._amax[("t", "entropy")] = np.float32(threshold)
    return run


def test_clipped_share_counts_the_values_above_the_threshold() -> None:
    assert one_tensor_run(0.4).clipped("t", "entropy") == 10 / 1010  # the ten values at 1.0
    assert one_tensor_run(0.05).clipped("t", "entropy") == 1.0  # every value above 0.05
    assert one_tensor_run(1.0).clipped("t", "entropy") == 0.0


def test_a_threshold_far_below_the_max_that_clips_many_values_is_named() -> None:
    warning = one_tensor_run(0.4).clipping_warning("entropy")
    assert (
        warning is not None and "'t'" in warning and "40% of max" in warning and "1.0% of values" in warning
    )
    assert one_tensor_run(0.6).clipping_warning("entropy") is None  # above half the max
    assert one_tensor_run(0.4).clipping_warning("minmax") is None  # minmax keeps the max


def test_a_tensor_list_keeps_the_histogram_pick_and_a_normalised_border_widens_the_range(
    tmp_path: Path,
) -> None:
    # Tensors made elsewhere (.npy) went through no preprocessing trtq knows: their histogram decides.
    data = np.full((3, 48, 192), 7.0, dtype=np.float32)
    for index in range(2):
        np.save(tmp_path / f"t{index}.npy", data)
    (tmp_path / "tensors.txt").write_text("t0.npy\nt1.npy\n")
    path = tmp_path / "tensors.yaml"
    path.write_text(yaml.safe_dump(classifier_config("tensors.txt", "out/t.cache")))
    run, _ = calibrate(load_config(path))
    assert "x" not in run.known and float(run.amax("x", "minmax")) == 7.0
    # A border given after normalising, beyond the pixels' range, is part of the input's range.
    wide = PreprocessSection(scale=1 / 255, mean=[0.5], std=[0.5], resize="fixed_height", pad_normalized=-3.0)
    assert value_range_amax(wide) == np.float32(3.0)
