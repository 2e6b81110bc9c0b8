"""FP32 vs INT8 output metrics (hand-computed) and the compare command on a real classifier."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import WriteConfig
from typer.testing import CliRunner

from trtq.cli.main import app
from trtq.compare.outputs import compare_output
from trtq.fileio import strict_json


def test_metrics_on_hand_computed_values() -> None:
    reference = np.array([[3.0, 4.0]], dtype=np.float32)
    quantized = np.array([[3.0, 3.0]], dtype=np.float32)
    m = compare_output("y", reference, quantized)
    assert m.cosine == pytest.approx(21 / (5 * math.sqrt(18)))
    assert m.snr_db == pytest.approx(10 * math.log10(25 / 1))
    assert (m.max_abs_error, m.mean_abs_error) == (1.0, 0.5)
    assert compare_output("y", reference, reference).snr_db == math.inf


def test_an_infinite_snr_is_null_in_json_as_in_every_trtq_json() -> None:
    reference = np.array([[3.0, 4.0]], dtype=np.float32)
    exact = compare_output("y", reference, reference).to_json()
    assert json.loads(strict_json(exact))["snr_db"] is None  # not the string "inf", not Infinity


def test_top_k_agreement_and_accuracy() -> None:
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((4, 10)).astype(np.float32)
    quantized = reference.copy()
    quantized[0] = -quantized[0]  # sample 0: the FP32 top-1 becomes the INT8 bottom-1
    quantized[1, reference[1].argmax()] = (
        np.sort(reference[1])[-3] - 1e-3
    )  # sample 1: FP32 top-1 falls to 3rd
    labels = [int(reference[i].argmax()) for i in range(4)]
    labels[3] = (labels[3] + 1) % 10
    m = compare_output("logits", reference, quantized, labels)
    assert m.top1_agreement == 0.5
    assert m.top5_agreement == 0.75
    assert (m.fp32_accuracy, m.int8_accuracy) == (0.75, 0.25)
    five = compare_output("logits", reference[:, :5], quantized[:, :5])
    assert five.top1_agreement is not None and five.top5_agreement is None  # top 5 of 5 classes: all


def test_compare_command_all_algorithms(write_config: WriteConfig, tmp_path: Path) -> None:
    config = write_config(n_images=6)
    from conftest import listed_photos

    held_out = listed_photos(9, start=10)
    (tmp_path / "held_out.txt").write_text("\n".join(held_out) + "\n")
    out = tmp_path / "compare.json"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            str(config),
            "--images",
            str(tmp_path / "held_out.txt"),
            "--algorithms",
            "all",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["samples"] == 9  # batch 2: the last batch is wrapped, the repeat cut off
    assert set(report["results"]) == {"entropy", "minmax", "percentile", "mse"}
    for metrics in report["results"].values():
        (output,) = metrics
        assert output["samples"] == 9
        assert 0.5 < output["cosine"] <= 1.0
        assert output["top1_agreement"] is not None
        assert output["top5_agreement"] is None  # 2 classes: every class is in the top 5
    bad = CliRunner().invoke(
        app, ["compare", str(config), "--images", str(tmp_path / "held_out.txt"), "--algorithms", "kl"]
    )
    assert bad.exit_code == 1 and "'kl' is not one of" in bad.output


def test_heldout_batches_stream_and_count_real_samples(write_config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each pass decodes anew (nothing kept between model runs); skipped images are not counted."""
    from conftest import listed_photos, preprocessed_by_hand

    from trtq.compare.models import heldout_batches
    from trtq.config import load_config

    config = load_config(write_config(n_images=2, on_bad_image="skip"))
    photos = listed_photos(3, start=10)
    (tmp_path / "held.txt").write_text("\n".join([photos[0], "missing.png", *photos[1:]]) + "\n")
    batches = heldout_batches(config, tmp_path / "held.txt")
    assert batches.count == 3
    first, second = list(batches), list(batches)
    assert len(first) == 2 and all(a is not b for a, b in zip(first, second, strict=True))
    expected = preprocessed_by_hand(photos)
    np.testing.assert_allclose(np.concatenate(first)[:3], expected, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(first)[3], expected[0], atol=1e-5)  # wrapped from the start


def test_compare_judges_declared_outputs_and_refuses_an_unknown_one(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """The classifier's output declared as `classes`: the task table and JSON hold top-1 agreement
    with FP32, which matches the 2-class argmax of the raw outputs counted here."""
    import yaml
    from conftest import listed_photos

    config = write_config(n_images=4)
    spec = yaml.safe_load(config.read_text())
    spec["outputs"] = {"save_infer_model/scale_0.tmp_1": {"kind": "classes"}}
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    (tmp_path / "held_out.txt").write_text("\n".join(listed_photos(6, start=10)) + "\n")
    out = tmp_path / "compare.json"
    args = ["compare", str(config), "--images", str(tmp_path / "held_out.txt"), "--algorithms", "minmax"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Task agreement with FP32" in result.output
    report = json.loads(out.read_text())
    task = report["agreement"]["minmax"]
    assert task["metric"] == "top1_agreement of save_infer_model/scale_0.tmp_1"
    assert task["agreement"] == report["results"]["minmax"][0]["top1_agreement"]

    spec["outputs"] = {"logits": {"kind": "classes"}}
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    bad = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert bad.exit_code == 1
    assert re.search(r"model.yaml:\d+: outputs.logits: 'logits' is not an output of", bad.output), bad.output
