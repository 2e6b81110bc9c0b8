"""The fingerprint covers everything that changes a cache's bytes, and nothing that does not."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import yaml
from conftest import WriteConfig

from trtq.calibrate.pipeline import calibrate
from trtq.config import load_config
from trtq.data.from_config import calibration_entries
from trtq.errors import TrtqError
from trtq.fingerprint import Fingerprint, fingerprint_config


def _with(config: Path, section: str, **values: object) -> Path:
    data = yaml.safe_load(config.read_text())
    data[section].update(values)
    changed = config.with_name(f"{config.stem}.{len(list(config.parent.glob('*.yaml')))}.yaml")
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    return changed


def _fingerprint(path: Path) -> Fingerprint:
    config = load_config(path)
    return fingerprint_config(config, calibration_entries(config))


def test_one_mean_or_std_value_is_the_same_preprocessing_as_three(write_config: WriteConfig) -> None:
    base = write_config(n_images=2)  # mean [0.5], std [0.5] on a 3-channel input
    same = _with(base, "preprocess", mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    other = _with(base, "preprocess", mean=[0.5, 0.4, 0.5])
    assert _fingerprint(same) == _fingerprint(base)
    assert _fingerprint(other).differences(_fingerprint(base)) == [
        "preprocess.mean changed ([0.5, 0.4, 0.5] -> [0.5, 0.5, 0.5])"
    ]


def test_header_algorithm_is_part_of_the_fingerprint_and_the_version_is_not(
    write_config: WriteConfig,
) -> None:
    base = write_config(n_images=2)
    header = _with(base, "calibration", cache_header="MinMaxCalibration", trt_version="8.6.1")
    # The version changes the header line only, never the scales: the cache version policy rewrites
    # the header for the TensorRT that reads it instead of calling the cache stale.
    assert _fingerprint(base).differences(_fingerprint(header)) == [
        "calibration.cache_header changed ('auto' -> 'MinMaxCalibration')",
    ]


def test_external_data_is_hashed_and_never_overwritten(
    write_config: WriteConfig, classifier_path: Path, tmp_path: Path
) -> None:
    model = onnx.load(str(classifier_path))
    _constants_to_initializers(model)  # the PP-OCR exports keep weights in Constant nodes
    onnx.save_model(
        model,
        str(tmp_path / "m.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.weights",
        size_threshold=0,
    )
    config_path = _with(write_config(n_images=2), "model", path="m.onnx")
    before = _fingerprint(config_path)
    weights = tmp_path / "m.weights"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    after = _fingerprint(config_path)
    assert after.model_sha256 == before.model_sha256  # the .onnx file itself did not change
    assert before.differences(after) == ["model external data 'm.weights' changed"]

    clobber = _with(config_path, "calibration", cache="m.weights")
    with pytest.raises(TrtqError, match=r"is external data of the model m\.onnx"):
        calibrate(load_config(clobber))
    assert weights.read_bytes() == bytes(data)


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    graph = model.graph
    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            values = onnx.numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(onnx.numpy_helper.from_array(values, node.output[0]))  # raw_data
        else:
            graph.node.append(node)
