"""End to end on a real model and photos: calibrate, cache and report contents, manifest staleness."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from conftest import WriteConfig

from trtq.cache import read_cache, read_manifest
from trtq.calib import amax_entropy, amax_minmax, scale_from_amax
from trtq.calibrate.pipeline import calibrate
from trtq.config import load_config
from trtq.data.from_config import calibration_entries
from trtq.errors import TrtqError
from trtq.fingerprint import fingerprint_config
from trtq.resources import resolve_path


def independent_batches(image_list: Path, batch: int) -> list[np.ndarray]:
    """The classifier's preprocessing written out by hand: BGR, stretch to 192x48, x/255*2-1, NCHW."""
    paths = [resolve_path(line, image_list.parent) for line in image_list.read_text().split()]
    images = [cv2.resize(cv2.imread(str(p)), (192, 48)).transpose(2, 0, 1) for p in paths]
    items = (np.stack(images).astype(np.float32) / 255.0 - 0.5) / 0.5
    return [items[i : i + batch] for i in range(0, len(items) - batch + 1, batch)]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from conftest import classifier_config, listed_photos

    tmp = tmp_path_factory.mktemp("calibrated")
    listed = listed_photos(7)
    (tmp / "images.txt").write_text("\n".join(listed) + "\n")
    config_path = tmp / "model.yaml"
    config_path.write_text(yaml.safe_dump(classifier_config("images.txt", "out/model.cache")))
    config = load_config(config_path)
    run, _ = calibrate(config)
    return config_path, run


def test_cache_scales_equal_an_independent_computation(calibrated: tuple[Path, object]) -> None:
    config_path, _ = calibrated
    cache = read_cache(config_path.parent / "out" / "model.cache")
    assert cache.version == 101601 and cache.algorithm == "EntropyCalibration2"
    batches = independent_batches(config_path.parent / "images.txt", 2)
    assert len(batches) == 3  # 7 images, batch 2, last one dropped
    # The input tensor: the preprocessing's range, pixels 0..255 -> -1..1 (tests/test_input_range.py).
    assert cache.scales["x"] == float(scale_from_amax(1.0))
    # The softmax output, from the unmodified model run by hand.
    session = ort.InferenceSession(
        str(load_config(config_path).model_path), providers=["CPUExecutionProvider"]
    )
    name = session.get_outputs()[0].name
    outputs = [session.run([name], {"x": b})[0] for b in batches]
    assert cache.scales[name] == pytest.approx(float(scale_from_amax(amax_entropy(outputs))), rel=1e-5)
    assert amax_minmax(outputs) <= 1.0


def test_cache_covers_every_activation_and_report_every_algorithm(calibrated: tuple[Path, object]) -> None:
    config_path, run = calibrated
    out = config_path.parent / "out"
    cache = read_cache(out / "model.cache")
    report = json.loads((out / "model.cache.report.json").read_text())
    assert set(cache.scales) == set(run.histograms) == set(report["tensors"])  # type: ignore[attr-defined]
    assert len(cache.scales) > 200
    assert report["images"] == {"used": 6, "batches": 3, "dropped": 1, "wrapped": 0, "skipped": []}
    for name, tensor in report["tensors"].items():
        assert set(tensor["amax"]) == {"entropy", "minmax", "percentile", "mse"}
        assert tensor["scale"]["entropy"] == pytest.approx(cache.scales[name], rel=1e-6)
        assert tensor["amax"]["entropy"] <= tensor["histogram_range"] * (1 + 1 / 2048) + 1e-30
        assert tensor["amax"]["minmax"] == pytest.approx(tensor["max_abs"])
    clipped = sum(t["amax"]["entropy"] < t["amax"]["minmax"] for t in report["tensors"].values())
    assert clipped > len(cache.scales) / 2  # entropy clips most real activations


def test_manifest_matches_until_something_changes(calibrated: tuple[Path, object], tmp_path: Path) -> None:
    config_path, _ = calibrated
    config = load_config(config_path)
    cache_path = config.cache_path
    manifest = read_manifest(cache_path)
    entries = calibration_entries(config)
    current = fingerprint_config(config, entries)
    assert manifest.mismatches(cache_path, current, entries) == []
    assert manifest.fingerprint.digest == current.digest
    assert manifest.algorithm == "entropy" and manifest.batch_size == 2

    images = config_path.parent / "images.txt"
    reordered = fingerprint_config(config, [entries[1], entries[0], *entries[2:]])
    assert manifest.mismatches(cache_path, reordered) == [
        "calibration images are the same but in a different order (TensorRT's histograms depend on it)"
    ]
    shorter = fingerprint_config(config, entries[:-1])
    assert manifest.mismatches(cache_path, shorter) == [
        "calibration images changed: 7 -> 6 images, 0 new or modified, 1 gone"
    ]

    changed = tmp_path / "changed.yaml"
    data = yaml.safe_load(config_path.read_text())
    data["preprocess"]["mean"] = [0.4]
    data["calibration"]["algorithm"] = "minmax"
    data["calibration"]["images"] = str(images)
    data["calibration"]["cache"] = str(cache_path)
    data["calibration"]["trt_version"] = "10.13.3"  # changes the header only: not a reason
    changed.write_text(yaml.safe_dump(data))
    other = load_config(changed)
    reasons = manifest.mismatches(cache_path, fingerprint_config(other, entries))
    assert reasons == [
        "preprocess.mean changed ([0.5, 0.5, 0.5] -> [0.4, 0.4, 0.4])",
        "calibration.algorithm changed ('entropy' -> 'minmax')",
    ]


def test_model_change_and_edited_cache_are_refused(calibrated: tuple[Path, object], tmp_path: Path) -> None:
    config_path, _ = calibrated
    config = load_config(config_path)
    model = onnx.load(str(config.model_path))
    model.producer_name = "retrained"
    copy = tmp_path / "model.onnx"
    onnx.save(model, str(copy))
    data = yaml.safe_load(config_path.read_text())
    data["model"]["path"] = str(copy)
    data["calibration"]["images"] = str(config_path.parent / "images.txt")
    edited_cache = tmp_path / "model.cache"
    edited_cache.write_text(config.cache_path.read_text().replace("x: ", "x: 1", 1))
    (tmp_path / "model.cache.manifest.json").write_text(
        (config.cache_path.parent / "model.cache.manifest.json").read_text()
    )
    data["calibration"]["cache"] = str(edited_cache)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data))
    other = load_config(changed)
    entries = calibration_entries(other)
    reasons = read_manifest(edited_cache).mismatches(edited_cache, fingerprint_config(other, entries))
    assert len(reasons) == 2
    assert "cache file was modified after it was written" in reasons[0]
    assert reasons[1].startswith("model bytes changed")


def test_too_few_images_is_one_clear_error(write_config: WriteConfig) -> None:
    config = load_config(write_config(n_images=1))
    with pytest.raises(TrtqError, match="1 usable image"):
        calibrate(config)
    assert not config.cache_path.exists()


def test_a_range_doubled_past_float32_keeps_minmax_and_refuses_infinite_entropy(tmp_path: Path) -> None:
    # m = x * 3.4e38 on real photos: the first photo's brightest pixel (129/255) sets the range at
    # about 1.7e38, the next photo's (255/255) doubles it past float32's largest value, 3.4028e38.
    # MinMax needs only max |x|, finite; the histogram algorithms' thresholds would be infinite.
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Mul", ["x", "k"], ["m"]), onnx.helper.make_node("Relu", ["m"], ["y"])],
        "huge",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [onnx.helper.make_tensor("k", onnx.TensorProto.FLOAT, [], [3.4e38])],
    )
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "huge.onnx"))
    photos = ["microaneurysms.png", "astronaut.png", "camera.png"]
    (tmp_path / "images.txt").write_text("".join(f"pkg:skimage/data/{name}\n" for name in photos))
    for algorithm in ("minmax", "entropy"):
        config = {
            "model": {"path": "huge.onnx"},
            "inputs": [{"name": "x", "shape": [1, 3, 32, 32]}],
            "preprocess": {"color": "bgr", "scale": 1 / 255},
            "calibration": {"images": "images.txt", "cache": f"{algorithm}.cache", "algorithm": algorithm},
        }
        (tmp_path / f"{algorithm}.yaml").write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy overflow warning on the way
        run, outputs = calibrate(load_config(tmp_path / "minmax.yaml"))
    m = run.histograms["m"]
    assert m.doublings == 1 and m.range > float(np.finfo(np.float32).max)
    # By hand: the brightest pixel, 255, preprocessed to float32 255 * (1/255), times float32 3.4e38.
    brightest = np.float32(np.float32(255) * np.float32(1 / 255)) * np.float32(3.4e38)
    assert read_cache(outputs.cache).scales["m"] == np.float32(brightest / np.float32(127))
    report = json.loads(outputs.report.read_text())  # strict JSON: the infinite thresholds are null
    assert report["tensors"]["m"]["amax"]["entropy"] is None
    assert report["tensors"]["m"]["amax"]["minmax"] == float(brightest)
    with pytest.raises(TrtqError, match="tensor 'm' has no finite entropy threshold: it lies beyond"):
        calibrate(load_config(tmp_path / "entropy.yaml"))


def test_batch_size_fills_a_dynamic_batch_dim(tmp_path: Path) -> None:
    # The classifier's batch dim is dynamic: min 1, opt 1, max 8. calibration.batch_size 3 makes the
    # calibration batches 3 images each (7 images: two batches, one dropped), recorded as such.
    from conftest import classifier_config, listed_photos

    (tmp_path / "images.txt").write_text("\n".join(listed_photos(7)) + "\n")
    spec = classifier_config("images.txt", "out/model.cache", batch_size=3, input_range="histogram")
    spec["inputs"] = [{"name": "x", "min": [1, 3, 48, 192], "opt": [1, 3, 48, 192], "max": [8, 3, 48, 192]}]
    config_path = tmp_path / "model.yaml"
    config_path.write_text(yaml.safe_dump(spec))
    config = load_config(config_path)
    assert config.calibration_shape == (3, 3, 48, 192) and config.image_input.opt_shape == (1, 3, 48, 192)
    run, outputs = calibrate(config)
    assert (run.stats.batches, run.stats.used, run.stats.dropped) == (2, 6, 1)
    batches = independent_batches(tmp_path / "images.txt", 3)
    cache = read_cache(outputs.cache)
    assert cache.scales["x"] == pytest.approx(float(scale_from_amax(amax_entropy(batches))), rel=1e-6)
    manifest = read_manifest(outputs.cache)
    assert manifest.batch_size == 3 and manifest.fingerprint.inputs == {"x": [3, 3, 48, 192]}


def test_batch_size_outside_the_profile_names_the_key(tmp_path: Path) -> None:
    from conftest import classifier_config

    spec = classifier_config("images.txt", "out/model.cache", batch_size=9)
    spec["inputs"] = [{"name": "x", "min": [1, 3, 48, 192], "opt": [2, 3, 48, 192], "max": [8, 3, 48, 192]}]
    config_path = tmp_path / "model.yaml"
    config_path.write_text(yaml.safe_dump(spec))
    with pytest.raises(TrtqError, match=r"calibration.batch_size: 9: the input takes batch sizes 1..8"):
        load_config(config_path)
