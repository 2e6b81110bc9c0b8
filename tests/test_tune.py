"""trtq tune on the real PP-OCR text classifier and photos: the search never loses to the best single
algorithm, respects the float-layer budget, and its Q/DQ model, cache, config and corrected FP32 model
agree; the weight-side pieces are checked against ONNX Runtime running the layer itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from conftest import WriteConfig, listed_photos
from onnx import helper, numpy_helper
from typer.testing import CliRunner

import trtq.cli.tune
from trtq.cache import read_cache, read_manifest
from trtq.calib.run import collect_histograms
from trtq.cli.main import app
from trtq.config import ALGORITHMS, load_config
from trtq.config.loader import LoadedConfig
from trtq.data.from_config import batch_source, calibration_entries
from trtq.data.image_list import ImageEntry
from trtq.data.overlap import overlap
from trtq.fingerprint import fingerprint_config
from trtq.model.index import GraphIndex
from trtq.qdq.export import export_qdq
from trtq.tune.bias import bias_shift
from trtq.tune.layer_inputs import WeightedLayer, collect_layer_inputs, weighted_layers
from trtq.tune.pipeline import TuneSettings, conv_layer_count, default_search_batches, validation_positions
from trtq.tune.steps import ProgressHooks
from trtq.tune.weights import max_scales, output_error, quantize_weights, round_nearest

runner = CliRunner()


def _ort(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(
        model.SerializeToString(),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=["WeightBiasQuantization"],
    )


def _relative_error(model: onnx.ModelProto, reference: list[np.ndarray], batches: list[np.ndarray]) -> float:
    """Squared output error over the FP32 output energy, computed here from scratch."""
    session = _ort(model)
    noise = energy = 0.0
    for batch, ref in zip(batches, reference, strict=True):
        out = session.run(None, {"x": batch})[0].astype(np.float64)
        noise += float(np.sum((ref - out) ** 2))
        energy += float(np.sum(ref**2))
    return noise / energy


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One `trtq tune` run: 6 tuning photos (3 batches of 2: 2 search, 1 validation), 4 other photos
    held out, 2 float layers."""
    tmp = tmp_path_factory.mktemp("tune")
    (tmp / "images.txt").write_text("\n".join(listed_photos(6)) + "\n")
    (tmp / "heldout.txt").write_text("\n".join(listed_photos(4, start=6)) + "\n")
    from conftest import classifier_config

    (tmp / "model.yaml").write_text(yaml.safe_dump(classifier_config("images.txt", "model.cache")))
    stages: list[list[object]] = []  # [name, units announced, advances], written for the progress test
    real_tune = trtq.cli.tune.tune

    def counted(
        config: LoadedConfig, entries: list[ImageEntry], settings: TuneSettings, hooks: ProgressHooks
    ) -> object:
        def stage(name: str, units: int) -> None:
            stages.append([name, units, 0])
            hooks.stage(name, units)

        def advance() -> None:
            stages[-1][2] += 1  # type: ignore[operator]
            hooks.advance()

        return real_tune(config, entries, settings, ProgressHooks(stage, advance))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trtq.cli.tune, "tune", counted)
        result = runner.invoke(
            app,
            [
                "tune",
                str(tmp / "model.yaml"),
                "--tune-images",
                str(tmp / "images.txt"),
                "--images",
                str(tmp / "heldout.txt"),
                "-o",
                str(tmp / "out" / "tuned.qdq.onnx"),
                "--max-float-layers",
                "2",
                "--search-batches",
                "2",
                "--validation-batches",
                "1",
                "--time-limit-s",
                "0",  # the whole search: what it finds must not depend on the machine's speed
            ],
        )
    assert result.exit_code == 0, result.output
    (tmp / "stages.json").write_text(json.dumps(stages))
    out = tmp / "out"
    return {
        "dir": tmp,
        "config": tmp / "model.yaml",
        "qdq": out / "tuned.qdq.onnx",
        "fp32": out / "tuned.fp32.onnx",
        "cache": out / "tuned.cache",
        "overlay": out / "tuned.yaml",
        "json": out / "tuned.tune.json",
        "stages": tmp / "stages.json",
    }


def test_every_progress_stage_gets_as_many_advances_as_it_announced(tuned: dict[str, Path]) -> None:
    """The bar showed 71/70: a float layer rejected on validation was one more advance than the
    budget announced. Every stage of the run, counted (tests/test_tune_progress.py has the rest)."""
    stages = json.loads(tuned["stages"].read_text())
    assert [name for name, _, _ in stages] == [
        "calibration pass (batches)",
        "weights: layer inputs",  # prepared with the search, before the steps (trtq/tune/pipeline.py)
        "single algorithms",
        "weights: rounding and bias correction",
        "thresholds",
        "float layers: each alone",
        "float layers: added in turn",
    ]
    assert [(name, units) for name, units, advances in stages if units != advances] == []


def test_tuned_never_worse_than_best_single_algorithm(tuned: dict[str, Path]) -> None:
    """On the search and validation batches together (here all 3 tuning batches)."""
    config = load_config(tuned["config"])
    entries = calibration_entries(config)
    run = collect_histograms(config, entries)
    batches = [b.data for b in batch_source(config, entries)]
    model = onnx.load(str(config.model_path))
    reference = [r.astype(np.float64) for r in (_ort(model).run(None, {"x": b})[0] for b in batches)]
    single = {
        a: _relative_error(export_qdq(model, run.scales(a)).model, reference, batches) for a in ALGORITHMS
    }
    tuned_error = _relative_error(onnx.load(str(tuned["qdq"])), reference, batches)
    assert tuned_error <= min(single.values()) * (1 + 1e-6)
    report = json.loads(tuned["json"].read_text())
    assert report["steps"][-1]["relative_error"] <= report["steps"][0]["relative_error"]
    assert set(report["heldout"]["results"]) == {
        f"plain INT8 ({report['best_single_algorithm']})",
        "tuned INT8",
    }


def test_validation_errors_are_those_of_the_last_batch(tuned: dict[str, Path]) -> None:
    """tune.json's validation errors, recomputed here on the last tuning batch (the one no step was fitted
    on), for the plain start and for the written tuned model; every kept step lowered both errors."""
    config = load_config(tuned["config"])
    entries = calibration_entries(config)
    last = [b.data for b in batch_source(config, entries)][-1:]
    model = onnx.load(str(config.model_path))
    reference = [_ort(model).run(None, {"x": b})[0].astype(np.float64) for b in last]
    report = json.loads(tuned["json"].read_text())
    assert report["settings"]["batches_used"] == {"search": 2, "fitting": 2, "validation": 1}
    plain = export_qdq(model, collect_histograms(config, entries).scales(report["best_single_algorithm"]))
    steps = report["steps"]
    start = _relative_error(plain.model, reference, last)
    np.testing.assert_allclose(steps[0]["validation_error"], start, rtol=1e-3)
    final = _relative_error(onnx.load(str(tuned["qdq"])), reference, last)
    np.testing.assert_allclose(steps[-1]["validation_error"], final, rtol=1e-3)
    assert final <= start
    kept = [s for s in steps[1:] if s["kept"] and s["gain"] > 0]
    for before, step in zip([steps[0], *kept], kept, strict=False):
        assert step["validation_error"] < before["validation_error"], step["step"]


def _float_weighted_nodes(model: onnx.ModelProto) -> set[str]:
    """Conv/Gemm/MatMul nodes whose weight is not the output of a DequantizeLinear."""
    index = GraphIndex.of(model)
    return {
        node.name
        for node in model.graph.node
        if node.op_type in ("Conv", "Gemm")
        and (producer := index.producer.get(node.input[1])) is not None
        and producer.op_type != "DequantizeLinear"
    } | {
        node.name
        for node in model.graph.node
        if node.op_type in ("Conv", "Gemm") and node.input[1] in index.initializers
    }


def test_budget_overlay_cache_and_qdq_agree(tuned: dict[str, Path]) -> None:
    qdq = onnx.load(str(tuned["qdq"]))
    overlay = load_config(tuned["overlay"])
    excluded = set(overlay.spec.qdq.exclude)
    assert len(excluded) <= 2
    assert excluded == _float_weighted_nodes(qdq)
    assert set(overlay.spec.build.layer_precisions) == excluded
    assert set(overlay.spec.build.layer_precisions.values()) <= {"fp16"}
    assert overlay.model_path == tuned["fp32"].resolve()
    assert overlay.cache_path == tuned["cache"].resolve()
    # trtq build (TensorRT 10 implicit) reuses the cache only when its manifest matches the config.
    entries = calibration_entries(overlay)
    mismatches = read_manifest(overlay.cache_path).mismatches(
        overlay.cache_path,
        fingerprint_config(overlay, entries),
        entries,
    )
    assert mismatches == []
    # Every activation Q/DQ scale in the model is the cache's scale for that tensor (float32 bits).
    cache = read_cache(tuned["cache"]).scales
    initializers = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    quantized = {
        n.input[0]: float(initializers[n.input[1]]) for n in qdq.graph.node if n.op_type == "QuantizeLinear"
    }
    assert quantized
    for tensor, scale in quantized.items():
        assert np.float32(cache[tensor]) == np.float32(scale), tensor


def test_corrected_model_differs_only_in_biases(tuned: dict[str, Path]) -> None:
    config = load_config(tuned["config"])
    original = onnx.load(str(config.model_path))
    corrected = onnx.load(str(tuned["fp32"]))
    bias_inputs = {
        n.input[2] for n in corrected.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2
    }
    assert len(original.graph.node) == len(corrected.graph.node)
    for before, node in zip(original.graph.node, corrected.graph.node, strict=True):
        if node.op_type == "Conv" and len(before.input) == 2 and len(node.input) == 3:
            assert list(node.input[:2]) == list(before.input)  # a bias added where there was none
            continue
        assert list(node.input) == list(before.input), node.name
        if node.op_type == "Constant" and node.output[0] not in bias_inputs:
            assert node == before, node.name
    original_init = {i.name: numpy_helper.to_array(i) for i in original.graph.initializer}
    for init in corrected.graph.initializer:
        if init.name in bias_inputs:
            continue
        assert np.array_equal(numpy_helper.to_array(init), original_init[init.name]), init.name
    kept = json.loads(tuned["json"].read_text())["steps"][1]["kept"]
    different = [
        b
        for b in bias_inputs
        if b not in original_init
        or not np.array_equal(original_init[b], numpy_helper.to_array(_initializer(corrected, b)))
    ]
    assert bool(different) == kept  # the correction is written exactly when it was measured to help


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(i for i in model.graph.initializer if i.name == name)


def _conv_model(layer: WeightedLayer, weight: np.ndarray, channels: int) -> onnx.ModelProto:
    """The layer alone, as ONNX Runtime runs it: an oracle for its output error."""
    attributes = {
        "group": layer.groups,
        "kernel_shape": list(layer.kernel),
        "strides": list(layer.strides),
        "pads": list(layer.pads),
        "dilations": list(layer.dilations),
    }
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attributes)
    graph = helper.make_graph(
        [node],
        "layer",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, channels, None, None])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight.astype(np.float32), "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("kind", ["1x1", "depthwise padded"])
def test_layer_error_and_bias_shift_match_the_layer_run_by_onnxruntime(
    kind: str, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trtq.tune.layer_inputs.MIN_POSITIONS", 10**6)  # every position, no sampling
    monkeypatch.setattr("trtq.tune.layer_inputs.MAX_POSITIONS", 10**6)
    config = load_config(write_config(4))
    model = onnx.load(str(config.model_path))
    batches = [b.data for b in batch_source(config, calibration_entries(config))]
    layers = weighted_layers(model)
    if kind == "1x1":  # a late, full 1x1 conv
        layer = next(x for x in reversed(layers) if x.op == "Conv" and x.groups == 1 and x.kernel == (1, 1))
    else:
        layer = next(x for x in reversed(layers) if x.groups > 1 and x.kernel[0] > 1 and any(x.pads))
    stats = collect_layer_inputs(model, [layer], "x", batches)[layer.node]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.append(helper.make_tensor_value_info(layer.data, onnx.TensorProto.FLOAT, None))
    inputs = np.concatenate([_ort(exposed).run([layer.data], {"x": b})[0] for b in batches])
    assert stats.rows == inputs.shape[0] * inputs.shape[2] * inputs.shape[3]
    weight = GraphIndex.of(model).weight(layer.weight)
    assert weight is not None
    matrix = layer.matrix(weight).astype(np.float64)
    moment = stats.second_moment
    chosen = quantize_weights(matrix, moment - stats.mean[:, :, None] * stats.mean[:, None, :], stats.rows)
    scales = max_scales(matrix)
    for values, channel_scales in ((round_nearest(matrix, scales), scales), (chosen.values, chosen.scales)):
        dequantized = values * channel_scales[..., None]
        fp = _ort(_conv_model(layer, weight, inputs.shape[1])).run(None, {"x": inputs})[0].astype(np.float64)
        quantized_weight = layer.unmatrix(dequantized, weight.shape)
        q = _ort(_conv_model(layer, quantized_weight, inputs.shape[1])).run(None, {"x": inputs})[0]
        difference = fp - q.astype(np.float64)  # [n, out, h, w]
        per_channel_mse = np.mean(difference**2, axis=(0, 2, 3))
        predicted = output_error(matrix - dequantized, moment).reshape(-1)
        np.testing.assert_allclose(predicted, per_channel_mse, rtol=2e-3, atol=1e-9)
        shift = bias_shift(matrix, dequantized, stats.mean).reshape(-1)
        np.testing.assert_allclose(shift, np.mean(difference, axis=(0, 2, 3)), rtol=2e-3, atol=1e-7)


def test_rounding_choice_against_brute_force() -> None:
    """On a small layer every floor/ceil choice (AdaRound's search space) can be tried: the search is never
    worse than rounding to nearest, and close to that optimum (it may beat it by leaving floor/ceil)."""
    rng = np.random.default_rng(3)
    k = 8
    weights = rng.normal(size=(1, 5, k))
    patches = rng.normal(size=(200, k)) @ rng.normal(size=(k, k))  # correlated inputs
    moment = (patches.T @ patches / len(patches))[None]
    chosen = quantize_weights(weights, moment, len(patches))
    nearest_scales = max_scales(weights)
    nearest = round_nearest(weights, nearest_scales) * nearest_scales[..., None]
    chosen_error = output_error(weights - chosen.dequantized(), moment)[0]
    nearest_error = output_error(weights - nearest, moment)[0]
    assert np.all(chosen_error <= nearest_error + 1e-12)
    assert np.any(chosen_error < nearest_error * 0.9)
    floors = np.floor(weights / chosen.scales[..., None])
    combos = np.array(np.meshgrid(*[[0, 1]] * k, indexing="ij")).reshape(k, -1).T  # [2^k, k]
    for channel in range(5):
        scale = chosen.scales[0, channel]
        candidates = np.clip(floors[0, channel] + combos, -127, 127) * scale
        deltas = weights[0, channel] - candidates
        errors = np.einsum("ck,kl,cl->c", deltas, moment[0], deltas)
        assert chosen_error[channel] <= 1.5 * errors.min() + 1e-12


def test_report_shows_the_tuning_steps(tuned: dict[str, Path]) -> None:
    page = tuned["dir"] / "report.html"
    result = runner.invoke(
        app, ["report", str(tuned["config"]), "--tune", str(tuned["json"]), "-o", str(page), "--top", "1"]
    )
    assert result.exit_code == 0, result.output
    html = page.read_text()
    report = json.loads(tuned["json"].read_text())
    assert "trtq tune: what each step gained" in html
    assert "6 tuning images (2 search and 1 validation batches of 2)" in html
    for step in report["steps"]:
        assert step["step"] in html
        assert f"{step['relative_error']:.5f}" in html
    # a hand-edited split is named, not an internal error
    report["settings"]["batches_used"] = {"x": 1}
    edited = tuned["dir"] / "edited.tune.json"
    edited.write_text(json.dumps(report))
    result = runner.invoke(
        app, ["report", str(tuned["config"]), "--tune", str(edited), "-o", str(page), "--top", "1"]
    )
    assert result.exit_code == 1, result.output
    assert "settings.batches_used.search" in " ".join(result.output.split())


def test_overlap_finds_shared_files_and_copies(tmp_path: Path, photos: list[Path]) -> None:
    copy = tmp_path / "renamed.png"
    copy.write_bytes(photos[1].read_bytes())
    tuning = [
        ImageEntry(photos[0], tmp_path / "tune.txt", 1),
        ImageEntry(photos[1], tmp_path / "tune.txt", 2),
    ]
    evaluation = [
        ImageEntry(p, tmp_path / "eval.txt", n) for n, p in enumerate([photos[0], copy, photos[2]], 1)
    ]
    found = overlap(tuning, evaluation)
    assert len(found) == 2
    assert "same file" in found[0]
    assert "same content" in found[1] and "renamed.png" in found[1]


def test_tune_refuses_outputs_that_are_inputs_and_bad_numbers(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    config = write_config(n_images=4)
    images = config.parent / "images.txt"
    before = images.read_bytes()
    runner = CliRunner()
    # -o images.txt would write tuned files named after it, and images.txt itself is an input.
    result = runner.invoke(app, ["tune", str(config), "--tune-images", str(images), "-o", str(images)])
    assert result.exit_code == 1, result.output
    assert "tuning image list" in " ".join(result.output.split())
    assert images.read_bytes() == before
    result = runner.invoke(
        app,
        [
            "tune",
            str(config),
            "--tune-images",
            str(images),
            "-o",
            str(tmp_path / "t.qdq.onnx"),
            "--target-cosine",
            "nan",
        ],
    )
    assert result.exit_code == 2 and "--target-cosine" in result.output
    assert not list(tmp_path.glob("t.*"))
    # 4 images at batch 2 make 2 batches, both for a 2-batch search: no validation batch is left.
    split = ["--search-batches", "2", "--validation-batches", "1"]
    result = runner.invoke(
        app, ["tune", str(config), "--tune-images", str(images), "-o", str(tmp_path / "t.qdq.onnx"), *split]
    )
    assert result.exit_code == 1, result.output
    assert "--validation-batches 1: the tuning images make 2 batches of 2" in " ".join(result.output.split())
    assert not list(tmp_path.glob("t.*"))


def test_validation_batches_spread_from_the_last() -> None:
    """27 batches, 8 validation: every 27/8th batch counted back from the last; the search batches are
    never given up for validation."""
    assert validation_positions(27, 8, 8) == [3, 6, 10, 13, 16, 20, 23, 26]
    assert validation_positions(6, 2, 2) == [2, 5]
    assert validation_positions(3, 2, 2) == [2]
    assert validation_positions(2, 2, 2) == []
    assert validation_positions(6, 0, 2) == []


def test_default_search_covers_eight_images_and_two_batches() -> None:
    assert [default_search_batches(b) for b in (1, 2, 3, 8, 16)] == [8, 4, 3, 2, 2]


def test_a_matmul_by_a_weight_matrix_is_tuned_like_a_conv() -> None:
    # x [2, 50, 16] @ W [16, 12]: every one of the 100 rows is a patch; the error a weight change
    # predicts per output channel equals ONNX Runtime's MatMul run with the quantized weights.
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((16, 12)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], "proj")],
        "attention_projection",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 50, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 50, 12])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    (layer,) = weighted_layers(model)
    assert (layer.op, layer.axis, layer.has_bias_input) == ("MatMul", 1, False)
    batch = (rng.standard_normal((2, 50, 16)) + 0.3).astype(np.float32)
    stats = collect_layer_inputs(model, [layer], "x", [batch])[layer.node]
    assert stats.rows == 100
    matrix = layer.matrix(weight).astype(np.float64)  # [1, 12 out, 16 in]
    chosen = quantize_weights(matrix, stats.second_moment, stats.rows)
    dequantized = layer.unmatrix(chosen.values * chosen.scales[..., None], weight.shape)
    assert dequantized.shape == (16, 12)
    difference = (batch.astype(np.float64) @ weight - batch.astype(np.float64) @ dequantized).reshape(-1, 12)
    predicted = output_error(matrix - chosen.values * chosen.scales[..., None], stats.second_moment)
    np.testing.assert_allclose(predicted.reshape(-1), np.mean(difference**2, axis=0), rtol=1e-6)
    # The MatMul counts in the float-layer budget, as a Conv does.
    assert conv_layer_count(model) == 1


@pytest.mark.parametrize("patch", [27, 576, 2304, 4608, 5184])
@pytest.mark.parametrize("batches", [1, 3, 9])
def test_sampled_rows_let_every_layer_use_tuned_rounding(patch: int, batches: int) -> None:
    """Rows are sampled over all fitting batches; with enough positions a layer gets at least the
    rows quantize_weights needs to use its moment (else it keeps nearest rounding), whatever the
    patch length: a cap of 16384 rows once silently did that to every 3x3x512 conv."""
    from trtq.tune.layer_inputs import rows_per_batch
    from trtq.tune.weights import ROWS_PER_COLUMN

    assert rows_per_batch(patch, batches) * batches >= ROWS_PER_COLUMN * patch
