"""Shared by the benchmark scripts: the demo's real activations, streamed batch by batch."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from trtq.calib.collect import ActivationCollector
from trtq.config import LoadedConfig, load_config
from trtq.data.from_config import batch_source, calibration_entries

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "configs" / "demo.yaml"


def demo_config() -> LoadedConfig:
    return load_config(DEMO)


def demo_batches(config: LoadedConfig, images: int) -> Iterator[npt.NDArray[np.float32]]:
    """Preprocessed input batches of the demo's first ``images`` calibration images."""
    entries = calibration_entries(config)[:images]
    for batch in batch_source(config, entries):
        yield batch.data


def demo_activations(config: LoadedConfig, images: int) -> Iterator[dict[str, npt.NDArray[np.float32]]]:
    """Every calibrated activation of one batch at a time (nothing kept between batches)."""
    collector = ActivationCollector(config.model_path, config.image_input.name, config.calibration_shape)
    for data in demo_batches(config, images):
        yield dict(collector.run(data))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
