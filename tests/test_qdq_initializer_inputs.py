"""`trtq qdq` on a model that lists its initializers as graph inputs too (older PyTorch exports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from conftest import classifier_config, listed_photos
from onnx import helper
from typer.testing import CliRunner

from trtq.cli.main import app
from trtq.errors import TrtqError
from trtq.model.session import inference_session
from trtq.qdq.smoke import run_once


def initializers_as_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The classifier as an old exporter writes it: its Constant nodes become initializers, each also
    listed in graph.input (so ONNX Runtime treats it as an overridable input with a default)."""
    legacy = onnx.ModelProto()
    legacy.CopyFrom(model)
    nodes = []
    for node in legacy.graph.node:
        if node.op_type != "Constant":
            nodes.append(node)
            continue
        tensor = onnx.TensorProto()
        tensor.CopyFrom(next(a.t for a in node.attribute if a.name == "value"))
        tensor.name = node.output[0]
        legacy.graph.initializer.append(tensor)
        legacy.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    del legacy.graph.node[:]
    legacy.graph.node.extend(nodes)
    onnx.checker.check_model(legacy)
    return legacy


@pytest.fixture(scope="module")
def legacy_model(classifier_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("legacy") / "legacy.onnx"
    onnx.save(initializers_as_inputs(onnx.load(str(classifier_path))), str(path))
    return path


def test_qdq_prunes_the_graph_inputs_of_replaced_weights(legacy_model: Path, tmp_path: Path) -> None:
    (tmp_path / "images.txt").write_text("\n".join(listed_photos(4)) + "\n")
    config = classifier_config("images.txt", "model.cache", algorithm="minmax")
    config["model"] = {"path": str(legacy_model)}
    config_file = tmp_path / "model.yaml"
    config_file.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    assert runner.invoke(app, ["calibrate", str(config_file)]).exit_code == 0
    out = tmp_path / "legacy.qdq.onnx"
    result = runner.invoke(app, ["qdq", str(config_file), "-o", str(out)])
    assert result.exit_code == 0, result.output

    written = onnx.load(str(out))
    legacy = onnx.load(str(legacy_model))
    weights = {n.input[1] for n in legacy.graph.node if n.op_type in ("Conv", "MatMul") and len(n.input) > 1}
    inputs = {i.name for i in written.graph.input}
    initializers = {i.name for i in written.graph.initializer}
    assert weights and not weights & inputs  # the float weights are gone from graph.input ...
    assert not weights & initializers  # ... as they are from the initializers
    assert inputs - initializers == {"x"}  # every other input still has its value
    batch = np.zeros((2, 3, 48, 192), dtype=np.float32)
    (probabilities,) = inference_session(written).run(None, {"x": batch})
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_a_model_that_cannot_run_is_a_clear_error(legacy_model: Path) -> None:
    broken = onnx.load(str(legacy_model))
    weight = next(n.input[1] for n in broken.graph.node if n.op_type == "Conv")
    position = next(i for i, init in enumerate(broken.graph.initializer) if init.name == weight)
    del broken.graph.initializer[position]  # what the export left before: an input with no value
    with pytest.raises(
        TrtqError, match=r"does not run in ONNX Runtime on a zero input 'x' \[2, 3, 48, 192\]"
    ):
        run_once(broken, "x", (2, 3, 48, 192))
    run_once(onnx.load(str(legacy_model)), "x", (2, 3, 48, 192))  # the intact model runs
