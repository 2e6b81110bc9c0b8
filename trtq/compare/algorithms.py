"""Every algorithm's Q/DQ model from one calibration pass: calibrate first, then export each."""

from __future__ import annotations

from trtq.calib.run import collect_histograms
from trtq.config.loader import LoadedConfig
from trtq.config.schema import Algorithm
from trtq.data.from_config import calibration_entries
from trtq.model.files import load_onnx
from trtq.qdq.export import QdqResult, export_qdq


def qdq_per_algorithm(config: LoadedConfig, algorithms: list[Algorithm]) -> dict[Algorithm, QdqResult]:
    """One calibration pass, one Q/DQ model per algorithm."""
    run = collect_histograms(config, calibration_entries(config))
    model = load_onnx(config.model_path)
    return {a: export_qdq(model, run.scales(a), config.spec.qdq.exclude) for a in algorithms}
