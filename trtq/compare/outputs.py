"""FP32 vs quantized model outputs: cosine, SNR, absolute errors, and top-k agreement for classifiers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from trtq.errors import TrtqError

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class OutputMetrics:
    output: str
    samples: int
    cosine: float
    """Of the flattened outputs of all samples: one number per output."""
    snr_db: float
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    """Share of samples whose FP32 top-1 class is in the quantized model's top 5 (classifiers with more
    than 5 classes: with 5 or fewer it is always 1 and says nothing)."""
    fp32_accuracy: float | None = None
    int8_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain values; an infinite SNR (no error) is written as null by trtq's JSON writer."""
        return dict(self.__dict__)


def finite_reference(outputs: Mapping[str, Array]) -> None:
    """FP32 outputs with NaN or infinity cannot be a reference: every agreement metric against them
    is NaN or meaningless, so the output and the share of samples are named instead."""
    for name, value in outputs.items():
        values = np.asarray(value)
        if values.size and not np.isfinite(values).all():
            samples = values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, -1)
            bad = int((~np.isfinite(samples)).any(axis=1).sum())
            raise TrtqError(
                f"FP32 output '{name}' has NaN or infinite values on {bad} of {samples.shape[0]} samples: "
                "INT8 cannot be compared with it; check the preprocessing and the model"
            )


def cosine(reference: npt.NDArray[np.float64], other: npt.NDArray[np.float64]) -> float:
    """Cosine of two flat arrays; where a side is all zero, 1 when they are equal, else 0."""
    norms = float(np.linalg.norm(reference) * np.linalg.norm(other))
    if norms == 0:
        return 1.0 if np.array_equal(reference, other) else 0.0
    return float(reference @ other / norms)


def compare_output(
    name: str, reference: Array, quantized: Array, labels: Sequence[int] | None = None
) -> OutputMetrics:
    """``reference`` and ``quantized`` hold all samples along axis 0."""
    ref = reference.astype(np.float64).ravel()
    out = quantized.astype(np.float64).ravel()
    error = ref - out
    noise = float(np.sum(error**2))
    metrics: dict[str, Any] = {
        "output": name,
        "samples": int(reference.shape[0]),
        "cosine": cosine(ref, out),
        "snr_db": 10 * math.log10(float(np.sum(ref**2)) / noise) if noise > 0 else math.inf,
        "max_abs_error": float(np.abs(error).max()) if error.size else 0.0,
        "mean_abs_error": float(np.abs(error).mean()) if error.size else 0.0,
    }
    if reference.ndim == 2 and reference.shape[1] > 1:
        top = np.argsort(-quantized, axis=1)[:, :5]
        fp32_top1 = reference.argmax(axis=1)
        metrics["top1_agreement"] = float(np.mean(top[:, 0] == fp32_top1))
        if reference.shape[1] > 5:
            metrics["top5_agreement"] = float(np.mean((top == fp32_top1[:, None]).any(axis=1)))
        if labels is not None:
            truth = np.asarray(labels[: reference.shape[0]])
            metrics["fp32_accuracy"] = float(np.mean(fp32_top1 == truth))
            metrics["int8_accuracy"] = float(np.mean(top[:, 0] == truth))
    return OutputMetrics(**metrics)
