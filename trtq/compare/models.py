"""Run FP32 and quantized ONNX models in ONNX Runtime on the same held-out images (sessions from
trtq/onnxruntime_session.py, which states the graph-optimisation choices)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from trtq.compare.outputs import Array, OutputMetrics, compare_output
from trtq.config.loader import LoadedConfig
from trtq.data.from_config import batch_source
from trtq.data.image_list import read_image_list
from trtq.errors import TrtqError


def evaluation_inputs(
    config: LoadedConfig, images: Path, max_images: int | None = None
) -> tuple[list[Array], int]:
    """Batches of the held-out images (the first ``max_images``) at the calibration shape; the last
    one is filled from the start (wrap) and the count of real samples is returned so the repeats can
    be cut off."""
    entries = read_image_list(images, max_images)
    source = batch_source(config, entries)
    source.last_batch = "wrap"
    batches = [batch.data for batch in source]
    return batches, source.stats.used


def collect_outputs(
    infer: Callable[[Array], dict[str, Array]], batches: Sequence[Array], count: int
) -> dict[str, Array]:
    """Every output over all batches, concatenated, with the wrapped repeats past ``count`` cut off."""
    outputs: dict[str, list[Array]] = {}
    for batch in batches:
        for name, value in infer(batch).items():
            outputs.setdefault(name, []).append(np.asarray(value, dtype=np.float32))
    return {name: np.concatenate(values)[:count] for name, values in outputs.items()}


def run(
    model: ort.InferenceSession, input_name: str, batches: Sequence[Array], count: int
) -> dict[str, Array]:
    names = [meta.name for meta in model.get_outputs()]

    def infer(batch: Array) -> dict[str, Array]:
        return dict(zip(names, model.run(names, {input_name: batch}), strict=True))

    return collect_outputs(infer, batches, count)


def compare_models(
    reference: dict[str, Array], quantized: dict[str, Array], labels: Sequence[int] | None = None
) -> list[OutputMetrics]:
    return [compare_output(name, reference[name], quantized[name], labels) for name in reference]


def read_labels(path: Path, count: int) -> list[int]:
    """One integer class per line, in the order of the image list."""
    try:
        lines = [
            line.strip()
            for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        labels = [int(line.split()[-1]) for line in lines]
    except (OSError, ValueError) as exc:
        raise TrtqError(f"{path}: expected one integer label per line ({exc})") from None
    if len(labels) != count:
        raise TrtqError(f"{path}: {len(labels)} labels for {count} images")
    return labels
