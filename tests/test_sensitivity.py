"""Sensitivity ranking on a real classifier with one activation scale planted 1000x too coarse."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
from conftest import PHOTO_LIST, listed_photos

from trtq.compare.sensitivity import analyse_sensitivity
from trtq.qdq import export_qdq
from trtq.resources import resolve_path


def test_planted_bad_scale_ranks_first_and_the_proposal_fixes_it(
    minmax_classifier: tuple[onnx.ModelProto, dict[str, float]],
) -> None:
    model, minmax_scales = minmax_classifier
    points = list(export_qdq(model, minmax_scales).activation_scales)
    planted = points[len(points) // 2]
    scales = dict(minmax_scales)
    scales[planted] *= 1000  # a 1000x too coarse step: nearly every value of this tensor rounds to 0
    held_out = [resolve_path(line, PHOTO_LIST.parent) for line in listed_photos(6, start=10)]
    batch = np.stack(
        [
            cv2.resize(cv2.imread(str(p)), (192, 48)).transpose(2, 0, 1).astype(np.float32) / 127.5 - 1
            for p in held_out
        ]
    )
    result = analyse_sensitivity(model, scales, "x", [batch], len(held_out), worst=1)
    assert result.ranking[0].tensor == planted
    assert result.ranking[0].alone < min(t.alone for t in result.ranking[1:])
    assert result.ranking[0].all_but > result.full_int8  # leaving it out helps
    assert result.weights_only > result.full_int8
    consumers = result.ranking[0].consumers
    assert result.proposal == sorted(consumers) and consumers
    assert result.with_proposal > result.full_int8
    assert f'"{consumers[0]}": fp16' in result.proposal_yaml()
