"""``trtq calibrate`` scores every algorithm on images it did not calibrate on: ``algorithm: auto``
writes the best one's cache, a fixed algorithm far below the best is warned about, and holding
images back leaves the cache exactly as TensorRT would make it from the whole list."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    TEXT_CLASSIFIER,
    WriteConfig,
    listed_photos,
    minmax_scales_by_hand,
    oracle_tensors,
    preprocessed_by_hand,
)
from test_tasks import text_lines_module
from typer.testing import CliRunner

from trtq.cache import read_cache
from trtq.cache.headers import header_for
from trtq.cache.manifest import read_manifest
from trtq.calib.run import collect_histograms
from trtq.calibrate.auto import held_batches
from trtq.calibrate.pipeline import calibrate
from trtq.cli.main import app
from trtq.config import load_config
from trtq.data.from_config import calibration_entries
from trtq.errors import TrtqError
from trtq.resources import resolve_path

REPO = Path(__file__).resolve().parent.parent
RECOGNIZER = "pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"


def test_held_batches_by_hand() -> None:
    assert held_batches(1, 0.25) == 0  # one batch: nothing can be held back
    assert held_batches(3, 0.25) == 1  # 0.75 rounded up
    assert held_batches(30, 0.25) == 8
    assert held_batches(4, 0.9) == 3  # never every batch
    assert held_batches(10, 0) == 0


def test_holding_back_leaves_the_cache_as_it_was_and_the_scored_models_never_saw_the_held_images(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """6 photos in 3 batches of 2: the last batch is held back. The cache is byte for byte the one
    calibrate writes without evaluation; the scored models' minmax scales are max|x| / 127 of the
    first 4 photos computed by hand, so the 2 scored photos were not in them."""
    config = load_config(write_config(n_images=6, algorithm="minmax"))
    run = collect_histograms(config, calibration_entries(config), checkpoint=2)
    assert run.prefix is not None
    assert [entry.path.name for entry in run.held] == [Path(p).name for p in listed_photos(6)[4:]]
    model_path = resolve_path(TEXT_CLASSIFIER, REPO)
    tensors = oracle_tensors(model_path)
    by_hand = minmax_scales_by_hand(model_path, preprocessed_by_hand(listed_photos(4)), tensors)
    prefix = run.prefix.scales("minmax")
    # ONNX Runtime's kernels round differently at batch 4 than at batch 2: a few ulps, not a photo
    assert {name: prefix[name] for name in tensors} == pytest.approx(by_hand, rel=1e-5)
    with_held = minmax_scales_by_hand(model_path, preprocessed_by_hand(listed_photos(6)), tensors)
    assert sum(abs(with_held[n] / prefix[n] - 1) > 1e-3 for n in tensors) >= 30  # 35 of 232 grow
    full = collect_histograms(config, calibration_entries(config))
    assert run.scales("entropy") == full.scales("entropy")  # the whole list's histograms, untouched

    _, scored = calibrate(config)
    cache_bytes = scored.cache.read_bytes()
    report = json.loads(scored.report.read_text())
    assert report["evaluation"]["images"] == 2
    assert report["evaluation"]["scored_on"].startswith("the last 2 images of the list")
    unscored_file = write_config(n_images=6, name="plain.yaml", algorithm="minmax", holdout=0.0)
    _, plain = calibrate(load_config(unscored_file))
    assert plain.evaluation is None and plain.cache.read_bytes() == cache_bytes


@pytest.fixture(scope="module")
def recognizer_lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """8 rendered text lines that FP32 reads exactly, and their texts."""
    directory = tmp_path_factory.mktemp("lines")
    made = text_lines_module().make_lines(directory, 8, seed=3)
    (directory / "lines.txt").write_text("".join(f"{path.name}\n" for path, _ in made))
    return directory, [text for _, text in made]


def recognizer_config(directory: Path, name: str, algorithm: str) -> Path:
    config = {
        "model": {"path": RECOGNIZER},
        "inputs": [{"name": "x", "shape": [4, 3, 48, 320]}],
        "preprocess": {"color": "bgr", "scale": 1 / 255, "mean": [0.5], "std": [0.5]},
        "calibration": {"images": "lines.txt", "cache": f"{name}.cache", "algorithm": algorithm},
        "outputs": {"softmax_11.tmp_0": {"kind": "ctc", "blank": 0}},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_auto_on_the_recognizer_writes_the_best_cache_and_entropy_warns(
    recognizer_lines: tuple[Path, list[str]],
) -> None:
    """PP-OCRv4's recognizer on 4 calibration lines, 4 held back: entropy's INT8 model reads
    nothing (character agreement 0) while another algorithm reads nearly every character."""
    directory, _ = recognizer_lines
    result = CliRunner().invoke(app, ["calibrate", str(recognizer_config(directory, "auto", "auto"))])
    assert result.exit_code == 0, result.output
    config = load_config(directory / "auto.yaml")
    report = json.loads(Path(f"{config.cache_path}.report.json").read_text())
    evaluation = report["evaluation"]
    scores = {a: s["agreement"] for a, s in evaluation["algorithms"].items()}
    assert evaluation["images"] == 4 and evaluation["metric"] == "char_agreement of softmax_11.tmp_0"
    assert scores["entropy"] == 0.0
    best = max(scores, key=lambda a: scores[a])
    assert best != "entropy" and scores[best] >= 0.9
    assert report["algorithm"] == "auto" and report["cache_algorithm"] == best
    manifest = read_manifest(config.cache_path)
    assert manifest.algorithm == best and manifest.fingerprint.calibration["algorithm"] == "auto"
    assert manifest.chosen_by is not None and manifest.chosen_by.startswith(f"auto: {best} has the best")
    assert read_cache(config.cache_path).algorithm == header_for(best)
    assert f"auto chose {best}" in result.output

    fixed = CliRunner().invoke(app, ["calibrate", str(recognizer_config(directory, "entropy", "entropy"))])
    assert fixed.exit_code == 0, fixed.output
    assert "calibration.algorithm entropy reaches char_agreement of softmax_11.tmp_0 0.0000" in fixed.stderr
    assert f"far below {best} ({scores[best]:.4f})" in fixed.stderr
    # the fixed algorithm's cache is written all the same: the warning says, it does not decide
    assert read_manifest(load_config(directory / "entropy.yaml").cache_path).algorithm == "entropy"


def test_auto_without_images_to_score_on_is_refused_at_its_key(write_config: WriteConfig) -> None:
    config = write_config(n_images=2, algorithm="auto")  # one batch of 2: nothing left to hold back
    with pytest.raises(TrtqError, match=r"model.yaml:\d+: calibration.algorithm: auto chooses on images"):
        calibrate(load_config(config))


def test_eval_images_are_scored_and_the_whole_list_calibrated(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    config_file = write_config(n_images=4, algorithm="auto")
    (tmp_path / "eval.txt").write_text("\n".join(listed_photos(2, start=10)) + "\n")
    result = CliRunner().invoke(app, ["calibrate", str(config_file), "--images", str(tmp_path / "eval.txt")])
    assert result.exit_code == 0, result.output
    report = json.loads(next((tmp_path / "out").glob("*.report.json")).read_text())
    assert report["evaluation"]["images"] == 2
    assert report["images"]["used"] == 4  # no calibration image held back
    assert "calibrated on the 4 listed" in report["evaluation"]["scored_on"]
    chosen = report["cache_algorithm"]
    agreements = {a: s["agreement"] for a, s in report["evaluation"]["algorithms"].items()}
    assert agreements[chosen] == max(agreements.values())
    assert np.isfinite(list(agreements.values())).all()
