"""A project small enough to run every command in a second: an 8x8 Relu -> Conv model whose tensors
and files are named as the test likes, two photos, their list and a config."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import yaml
from onnx import helper, numpy_helper


def tiny_model(path: Path, hidden: str, output: str) -> None:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], [hidden], name="relu"),
            helper.make_node("Conv", [hidden, "w"], [output], pads=[1, 1, 1, 1], name="conv"),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def tiny_project(directory: Path, config_name: str, model_name: str, hidden: str, output: str) -> Path:
    """Write the project into ``directory``; returns the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    tiny_model(directory / model_name, hidden, output)
    rng = np.random.default_rng(1)
    for index in range(2):
        cv2.imwrite(str(directory / f"p{index}.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (directory / "images.txt").write_text("p0.png\np1.png\n")
    config = {
        "model": {"path": model_name},
        "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
        "preprocess": {"color": "bgr", "scale": 1 / 255},
        "calibration": {"images": "images.txt", "cache": f"out/{model_name}.cache"},
    }
    path = directory / config_name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
