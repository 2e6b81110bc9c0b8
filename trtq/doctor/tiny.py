"""A tiny CNN and eight images made on the spot (no download), with configs for it in one folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from trtq.config import LoadedConfig, load_config
from trtq.data.batches import Batch
from trtq.data.from_config import batch_source, calibration_entries

INPUT = "x"
OUTPUT = "y"
CHANNELS, SIDE, CLASSES = 3, 16, 4
IMAGES = 8
PROFILE = {
    "min": [1, CHANNELS, SIDE, SIDE],
    "opt": [2, CHANNELS, SIDE, SIDE],
    "max": [4, CHANNELS, SIDE, SIDE],
}


def tiny_model(seed: int = 0) -> onnx.ModelProto:
    """conv-relu, conv + residual add, relu, global pool, gemm: the layer kinds trtq qdq quantizes,
    a dynamic batch dimension (so builds need an optimization profile), weights from a fixed seed."""
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", [INPUT, "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["r1", "c2"], ["a2"], name="residual"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], [OUTPUT], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "trtq_doctor_tiny",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", CHANNELS, SIDE, SIDE])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", CLASSES])],
        [
            weight("w1", 8, CHANNELS, 3, 3),
            weight("b1", 8),
            weight("w2", 8, 8, 3, 3),
            weight("b2", 8),
            weight("w3", CLASSES, 8),
            weight("b3", CLASSES),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="trtq doctor")
    model.ir_version = 8  # readable by every ONNX Runtime and TensorRT parser trtq supports
    onnx.checker.check_model(model)
    return model


def write_images(folder: Path, count: int = IMAGES, seed: int = 0) -> list[Path]:
    """Smooth gradients with noise and a bright square: varied, non-constant activations."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    ramp = np.linspace(0, 255, 24, dtype=np.float32)
    for index in range(count):
        image = ramp[None, :, None] * rng.uniform(0.2, 1.0, size=(1, 1, 3)) + rng.normal(0, 20, (20, 24, 3))
        top, left = rng.integers(0, 12, size=2)
        image[top : top + 6, left : left + 6] = 255
        path = folder / f"image{index}.png"
        cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8))
        paths.append(path)
    return paths


@dataclass
class TinyWorkspace:
    """The tiny model, its images and one YAML config per check, all in ``folder``."""

    folder: Path
    configs: dict[str, LoadedConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.model_path = self.folder / "tiny.onnx"
        onnx.save(tiny_model(), str(self.model_path))
        images = write_images(self.folder / "images")
        self.images = self.folder / "images.txt"
        self.images.write_text("".join(f"images/{path.name}\n" for path in images))

    def config(
        self,
        name: str,
        precision: str,
        inputs: list[dict[str, Any]] | None = None,
        **sections: dict[str, Any],
    ) -> LoadedConfig:
        """``name``.yaml for the tiny model, its cache and engine named after it; ``inputs`` replace
        the dynamic-batch profile, ``sections`` update the config's sections (a ``model`` section
        may point at another ONNX file)."""
        data: dict[str, Any] = {
            "model": {"path": self.model_path.name},
            "inputs": inputs or [{"name": INPUT, **PROFILE}],
            "preprocess": {"color": "rgb", "scale": 1 / 255},
            "calibration": {"images": self.images.name, "cache": f"{name}.cache", "workers": 1},
            "build": {"precision": precision, "engine": f"{name}.engine"},
        }
        for section, values in sections.items():
            data.setdefault(section, {}).update(values)
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.configs[name] = load_config(path)
        return self.configs[name]

    def first_batch(self, config: LoadedConfig) -> Batch:
        """The first calibration batch, at the calibration (opt) shape."""
        batch = next(iter(batch_source(config, calibration_entries(config))), None)
        assert batch is not None, "the tiny workspace has images"
        return batch
