"""`trtq sensitivity` end to end on a real classifier with one activation scale planted 1000x too coarse."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import yaml
from conftest import WriteConfig, listed_photos
from reference_graph import quantized_activations
from typer.testing import CliRunner

from trtq.cache.trt_format import format_cache, make_cache
from trtq.cli.main import app


def test_planted_bad_scale_ranks_first_and_the_proposal_fixes_it(
    minmax_classifier: tuple[onnx.ModelProto, dict[str, float]], write_config: WriteConfig, tmp_path: Path
) -> None:
    model, minmax_scales = minmax_classifier
    expected_points = quantized_activations(model)  # from a walk of the graph, not from trtq
    planted = sorted(expected_points)[len(expected_points) // 2]
    scales = dict(minmax_scales)
    scales[planted] *= 1000  # a 1000x too coarse step: nearly every value of this tensor rounds to 0
    cache = tmp_path / "planted.cache"
    cache.write_text(format_cache(make_cache(scales, "MinMaxCalibration", 101601)))
    config = write_config(n_images=2)
    (tmp_path / "held_out.txt").write_text("\n".join(listed_photos(6, start=10)) + "\n")
    out = tmp_path / "sensitivity.json"
    result = CliRunner().invoke(
        app,
        [
            "sensitivity",
            str(config),
            "--images",
            str(tmp_path / "held_out.txt"),
            "--cache",
            str(cache),
            "--worst",
            "1",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    ranking = report["ranking"]
    assert sorted(r["tensor"] for r in ranking) == sorted(expected_points)  # every quantized activation
    first = ranking[0]
    assert first["tensor"] == planted
    assert first["alone"] < min(r["alone"] for r in ranking[1:])
    assert first["all_but"] > report["full_int8"]  # leaving it out helps
    assert report["weights_only"] > report["full_int8"]
    consumers = sorted(node.name for node in model.graph.node if planted in node.input)
    assert first["consumers"] and sorted(first["consumers"]) == consumers
    assert report["proposal"] == consumers
    assert report["with_proposal"] > report["full_int8"]
    proposal = yaml.safe_load(report["proposal_yaml"])
    assert proposal == {
        "qdq": {"exclude": consumers},
        "build": {"layer_precisions": dict.fromkeys(consumers, "fp16")},
    }
    assert "qdq:" in result.output and "layer_precisions" in result.output  # printed to paste
