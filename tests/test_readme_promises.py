"""README promises no other test exercised: cache_header, the fingerprint's last_batch/on_bad_image,
`cache inspect --sort`, `compare --labels` and `bench` with several targets and --shape."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from conftest import WriteConfig, listed_photos, preprocessed_by_hand
from typer.testing import CliRunner

from trtq.cache import read_cache
from trtq.cli.main import app
from trtq.config import load_config
from trtq.model.session import inference_session
from trtq.qdq import export_qdq

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def edit_calibration(config: Path, **changes: object) -> None:
    data = yaml.safe_load(config.read_text())
    data["calibration"].update(changes)
    config.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(
    ("algorithm", "cache_header", "first_line"),
    [
        ("minmax", "auto", "TRT-101601-MinMaxCalibration"),
        ("minmax", "EntropyCalibration2", "TRT-101601-EntropyCalibration2"),  # for trtexec --calib
        ("percentile", "MinMaxCalibration", "TRT-101601-MinMaxCalibration"),
    ],
)
def test_cache_header_names_the_calibrator(
    write_config: WriteConfig, algorithm: str, cache_header: str, first_line: str
) -> None:
    config = write_config(n_images=2, algorithm=algorithm, cache_header=cache_header)
    code, output = invoke("calibrate", config)
    assert code == 0, output
    cache = config.parent / "out" / "model.cache"
    assert cache.read_text().splitlines()[0] == first_line
    manifest = json.loads((cache.parent / "model.cache.manifest.json").read_text())
    assert manifest["algorithm"] == algorithm  # the real algorithm, whatever the header says
    assert "2 images in 1 batch," in re.sub(r"\s+", " ", output)  # not "1 batches"


@pytest.mark.parametrize(
    ("key", "before", "after"), [("last_batch", "drop", "wrap"), ("on_bad_image", "skip", "error")]
)
def test_changing_last_batch_or_on_bad_image_makes_the_cache_stale(
    write_config: WriteConfig, key: str, before: str, after: str
) -> None:
    # 5 photos and a missing one at batch 2: the policy for the odd photo and for the bad line both
    # change what calibration does, so both must be part of what the manifest remembers.
    config = write_config(n_images=5, last_batch="drop", on_bad_image="skip")
    images = config.parent / "images.txt"
    images.write_text(images.read_text() + "missing.jpg\n")
    edit_calibration(config, **{key: before})
    assert invoke("calibrate", config)[0] == 0
    cache = config.parent / "out" / "model.cache"
    code, output = invoke("cache", "check", config, "--cache", cache)
    assert code == 0, output
    edit_calibration(config, **{key: after})
    code, output = invoke("cache", "check", config, "--cache", cache)
    assert code == 1
    assert "stale" in output and f"calibration.{key}" in output


def printed_tensor_order(output: str, names: set[str]) -> list[str]:
    """Tensor names in the order their rows appear (rows are: scale, amax, then the name to the end)."""
    order = []
    for line in output.splitlines():
        row = re.match(r"^\s*\S+\s+\S+\s{2}(.+)$", line)
        if row and row[1] in names:
            order.append(row[1])
    return order


def test_cache_inspect_sort_orders(write_config: WriteConfig) -> None:
    config = write_config(n_images=2)
    assert invoke("calibrate", config)[0] == 0
    cache = config.parent / "out" / "model.cache"
    scales = read_cache(cache).scales
    file_order = [line.split(":")[0] for line in cache.read_text().splitlines()[1:]]
    expected = {
        "file": file_order,
        "name": sorted(scales),
        "scale": sorted(scales, key=lambda name: -scales[name]),  # largest first, ties in file order
    }
    for sort, order in expected.items():
        code, output = invoke("cache", "inspect", cache, "--sort", sort)
        assert code == 0, output
        assert printed_tensor_order(output, set(scales)) == order, sort


def test_compare_with_labels(write_config: WriteConfig, tmp_path: Path) -> None:
    config = write_config(n_images=4)
    assert invoke("calibrate", config)[0] == 0
    held_out = listed_photos(5, start=10)
    (tmp_path / "held_out.txt").write_text("\n".join(held_out) + "\n")
    # FP32's own predictions, made by hand, for the first 3 photos; the other class for the last 2.
    loaded = load_config(config)
    inputs = preprocessed_by_hand(held_out)
    fp32 = ort.InferenceSession(str(loaded.model_path), providers=["CPUExecutionProvider"])
    predicted = fp32.run(None, {"x": inputs})[0].argmax(axis=1)
    labels = [int(p) if i < 3 else 1 - int(p) for i, p in enumerate(predicted)]
    (tmp_path / "labels.txt").write_text("# class per held-out photo\n" + "\n".join(map(str, labels)) + "\n")
    out = tmp_path / "compare.json"
    code, output = invoke(
        "compare",
        config,
        "--images",
        tmp_path / "held_out.txt",
        "--labels",
        tmp_path / "labels.txt",
        "--json",
        out,
    )
    assert code == 0, output
    (metrics,) = json.loads(out.read_text())["results"]["model.cache"]
    assert metrics["samples"] == 5
    assert metrics["fp32_accuracy"] == pytest.approx(3 / 5)
    # INT8: the Q/DQ model of the same cache run by hand on the same photos, scored against the labels.
    qdq = export_qdq(onnx.load(str(loaded.model_path)), read_cache(loaded.cache_path).scales).model
    int8 = inference_session(qdq).run(None, {"x": inputs})[0].argmax(axis=1)
    assert metrics["int8_accuracy"] == pytest.approx(float(np.mean(int8 == np.array(labels))))
    assert metrics["top1_agreement"] == pytest.approx(float(np.mean(int8 == predicted)))

    (tmp_path / "short.txt").write_text("0\n1\n")
    code, output = invoke(
        "compare", config, "--images", tmp_path / "held_out.txt", "--labels", tmp_path / "short.txt"
    )
    assert code == 1 and "2 labels for 5 images" in output

    # The classifier has 2 classes (its output is N x 2): a label outside 0..1 names its line.
    for bad, expected in [
        ("-1", "label -1 outside 0..1 (the model has 2 classes)"),
        ("x", "'x' is not an integer"),
    ]:
        (tmp_path / "bad.txt").write_text(f"# header\n0\n1\n{bad}\n0\n1\n")
        code, output = invoke(
            "compare", config, "--images", tmp_path / "held_out.txt", "--labels", tmp_path / "bad.txt"
        )
        assert code == 1 and f"bad.txt:4: {expected}" in output.replace("\n", ""), output


def test_bench_several_targets_with_shape(
    write_config: WriteConfig, classifier_path: Path, tmp_path: Path
) -> None:
    config = write_config(n_images=2)  # a config: times its first calibration batch, [2, 3, 48, 192]
    copy = tmp_path / "copy.onnx"
    shutil.copyfile(classifier_path, copy)
    out = tmp_path / "bench.json"
    code, output = invoke(
        "bench",
        config,
        classifier_path,
        copy,
        "--backend",
        "onnxruntime",
        "--shape",
        "x:3x3x48x192",
        "--warmup-ms",
        "0",
        "--duration-s",
        "0.01",
        "--iterations",
        "2",
        "--json",
        out,
    )
    assert code == 0, output
    report = json.loads(out.read_text())
    assert [r["target"] for r in report] == [str(config), str(classifier_path), str(copy)]
    assert [r["input_shapes"] for r in report] == [
        {"x": [2, 3, 48, 192]},
        {"x": [3, 3, 48, 192]},
        {"x": [3, 3, 48, 192]},
    ]
    assert [r["batch_size"] for r in report] == [2, 3, 3]
    assert all(r["backend"] == "onnxruntime" and r["queries"] >= 2 for r in report)
