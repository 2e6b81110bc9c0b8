"""Run FP32 and quantized models (any runner: trtq/model/runner.py) on the same held-out images."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from trtq.compare.outputs import Array, OutputMetrics, compare_output, finite_reference
from trtq.config.loader import LoadedConfig
from trtq.data.batches import BatchSource
from trtq.data.from_config import batch_source
from trtq.data.image_list import ImageEntry, read_image_list
from trtq.errors import TrtqError
from trtq.model.runner import Runner


@dataclass
class HeldOutBatches:
    """Held-out batches decoded anew on each pass, so a comparison holds one batch of inputs at a time.

    The last batch is filled from the start of the list (wrap); ``count`` is the number of real
    samples, so the repeats can be cut off."""

    config: LoadedConfig
    entries: list[ImageEntry]

    def __iter__(self) -> Iterator[Array]:
        for batch in self._source():
            yield batch.data

    @cached_property
    def count(self) -> int:
        if self.config.spec.calibration.on_bad_image == "error":
            return len(self.entries)  # every image decodes, or the pass stops with an error
        source = self._source()
        for _ in source:  # skipped images are only known by decoding them
            pass
        return source.stats.used

    def _source(self) -> BatchSource:
        source = batch_source(self.config, self.entries)
        source.last_batch = "wrap"
        return source


def heldout_batches(config: LoadedConfig, images: Path, max_images: int | None = None) -> HeldOutBatches:
    return HeldOutBatches(config, read_image_list(images, max_images))


def evaluation_inputs(
    config: LoadedConfig, images: Path, max_images: int | None = None
) -> tuple[list[Array], int]:
    """The held-out batches decoded once and kept, for analyses that run the model many times."""
    batches = heldout_batches(config, images, max_images)
    return list(batches), batches.count


def collect_outputs(
    infer: Callable[[Array], dict[str, Array]], batches: Iterable[Array], count: int
) -> dict[str, Array]:
    """Every output over all batches, concatenated, with the wrapped repeats past ``count`` cut off."""
    outputs: dict[str, list[Array]] = {}
    for batch in batches:
        for name, value in infer(batch).items():
            outputs.setdefault(name, []).append(np.asarray(value, dtype=np.float32))
    return {name: np.concatenate(values)[:count] for name, values in outputs.items()}


def run(runner: Runner, input_name: str, batches: Iterable[Array], count: int) -> dict[str, Array]:
    """Every output of ``runner`` over the batches (fed to ``input_name``), the repeats cut off."""
    return collect_outputs(lambda batch: runner.infer({input_name: batch}), batches, count)


def compare_models(
    reference: dict[str, Array], quantized: dict[str, Array], labels: Sequence[int] | None = None
) -> list[OutputMetrics]:
    finite_reference(reference)
    return [compare_output(name, reference[name], quantized[name], labels) for name in reference]


def read_labels(path: Path, count: int, classes: int | None = None) -> list[int]:
    """One integer class per line (the last word of it), in the order of the image list; with
    ``classes``, each must be in 0..classes-1."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrtqError(f"{path}: cannot read labels: {exc}") from None
    labels: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        word = line.split()[-1]
        try:
            label = int(word)
        except ValueError:
            raise TrtqError(f"{path}:{number}: '{word}' is not an integer label") from None
        if classes is not None and not 0 <= label < classes:
            raise TrtqError(
                f"{path}:{number}: label {label} outside 0..{classes - 1} (the model has {classes} classes)"
            )
        labels.append(label)
    if len(labels) != count:
        raise TrtqError(f"{path}: {len(labels)} labels for {count} images")
    return labels


def class_count(outputs: dict[str, Array]) -> int | None:
    """Classes of the smallest output that is scored against labels (2-D, more than one column)."""
    widths = [int(o.shape[1]) for o in outputs.values() if o.ndim == 2 and o.shape[1] > 1]
    return min(widths) if widths else None
