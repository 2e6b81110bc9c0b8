"""trtq's entropy pick against an independent implementation: NVIDIA ModelOpt's ``_compute_amax_entropy``.

Both search the same TensorRT-rule histogram (2048 bins of |x|, range doubling across batches) of
every calibrated activation of real networks with ReLU-family activations: the demo's PP-OCRv4
detector (ReLU, Clip, HardSigmoid), the PP-OCR text-direction classifier (ReLU, ReLU6 as Clip,
HardSigmoid) and, when torch can export it, EfficientNet-Lite0 (ReLU6). ModelOpt is called as an
oracle for TensorRT's search: 128 signed levels (num_bits=8, unsigned=False), start bin 128,
stride 1. Known differences by design, accounted for before comparing:

- ModelOpt returns the bin edge i * w, TensorRT (and trtq) (i + 0.5) * w: the *i* is compared.
- Exact ties: ModelOpt takes the largest i, trtq the smallest; a disagreement whose two KLs tie
  (trtq's divergence equal within 1e-9 relative) is a tie, not an error.
- Degenerate candidates (P with one non-empty bin, KL 0): TensorRT skips them, ModelOpt does not.
  When bin 1 is empty, the zero-bin rule empties bin 0 too, and a candidate whose kept bins are
  all empty gives ModelOpt a NaN KL, which its ``np.argmin`` returns as the minimum.

Every disagreement is listed with both KL values and its reason. ``--fixtures`` saves a few dozen
of these real histograms with ModelOpt's picks for the CI test (tests/test_entropy_oracle.py).

    python benchmarks/entropy_oracle.py [--models det cls lite0] [--fixtures tests/data/entropy_oracle.npz]

Needs the bench extra (nvidia-modelopt with a CPU torch); ModelOpt takes about 4 s per tensor, so
the script spreads the tensors over two processes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from common import REPO, machine
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(REPO / "tests"))  # the plain per-candidate recipe the tests also use
from reference_kl import reference_kl

from trtq.calib.entropy import FIRST_CANDIDATE, entropy_threshold, kl_divergences, with_zero_bin_rule
from trtq.calib.histogram import TrtHistogram
from trtq.calib.run import collect_histograms
from trtq.config import load_config
from trtq.data.from_config import calibration_entries

RELU_FAMILY = ("Relu", "Clip", "HardSwish", "HardSigmoid")
TIE = 1e-9
FIXTURES_PER_MODEL = 12


def modelopt_pick(counts: np.ndarray) -> int:
    """ModelOpt's winning i on a 2048-bin histogram over [0, 2048) (so the edge i * 1 is i itself)."""
    from modelopt.torch.quantization.calib.histogram import _compute_amax_entropy

    edges = np.arange(counts.size + 1, dtype=np.float64)
    amax = _compute_amax_entropy(counts.astype(np.int64).copy(), edges, 8, False)
    return round(float(amax))


def modelopt_picks(histograms: list[np.ndarray], cache_file: Path, workers: int) -> list[int]:
    """ModelOpt's picks, from ``cache_file`` where the same histogram was searched before."""
    from modelopt import __version__ as modelopt_version

    # Keyed by ModelOpt's version and modelopt_pick's arguments too: a change to either is a new search.
    keys = [
        f"modelopt {modelopt_version}, 8 bits signed, start 128:"
        + hashlib.sha256(counts.astype(np.int64).tobytes()).hexdigest()
        for counts in histograms
    ]
    known: dict[str, int] = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    todo = [i for i, key in enumerate(keys) if key not in known]
    print(f"ModelOpt: {len(todo)} of {len(keys)} histograms to search ({len(keys) - len(todo)} cached)")
    with ProcessPoolExecutor(workers) as pool:
        for i, pick in zip(
            todo, pool.map(modelopt_pick, [histograms[i] for i in todo], chunksize=2), strict=True
        ):
            known[keys[i]] = pick
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(known))
    return [known[key] for key in keys]


@dataclass(frozen=True)
class Pick:
    model: str
    tensor: str
    producer: str
    zero_share: float
    doublings: int
    trtq: int
    modelopt: int
    trtq_without_zero_rule: int
    reason: str
    kl_trtq_pick: float
    kl_modelopt_pick: float


def classify(counts: np.ndarray, trtq_i: int, modelopt_i: int) -> tuple[str, float, float]:
    """Why trtq and ModelOpt differ ("" when they agree), with the KL at both picks from the plain
    per-candidate recipe in tests/reference_kl.py (not trtq's vectorised search)."""
    searched = with_zero_bin_rule(counts)
    candidates = np.arange(FIRST_CANDIDATE, counts.size + 1)
    _, degenerate = kl_divergences(searched, candidates)
    kl_t, kl_m = reference_kl(searched, trtq_i), reference_kl(searched, modelopt_i)
    if trtq_i == modelopt_i:
        return "", kl_t, kl_m
    if not searched[:modelopt_i].any():
        return (
            "ModelOpt's pick keeps no mass (its KL is NaN there, and NumPy's argmin returns NaNs)",
            kl_t,
            kl_m,
        )
    if degenerate[modelopt_i - FIRST_CANDIDATE]:
        return (
            "ModelOpt picked a degenerate candidate (one non-empty P bin), which TensorRT skips",
            kl_t,
            kl_m,
        )
    if math.isfinite(kl_t) and math.isclose(kl_t, kl_m, rel_tol=TIE, abs_tol=1e-15):
        return "tie: equal KL, ModelOpt takes the largest i, trtq the smallest", kl_t, kl_m
    return "unexplained", kl_t, kl_m


def _producers(model_path: Path) -> dict[str, str]:
    graph = onnx.load(str(model_path), load_external_data=False).graph
    return {name: node.op_type for node in graph.node for name in node.output}


def model_configs(work: Path, wanted: list[str]) -> dict[str, Path]:
    """Config files for the networks, calibrated at their usual batch sizes on the demo's photos."""
    configs: dict[str, Path] = {}
    photos = REPO / "calibrators" / "skimage_photos.txt"
    if "det" in wanted:
        data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
        data["model"]["path"] = "pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
        data["calibration"].update(images=str(photos), cache=str(work / "det.cache"))
        configs["det"] = work / "det.yaml"
        configs["det"].write_text(yaml.safe_dump(data))
    if "cls" in wanted:
        data = {
            "model": {"path": "pkg:rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"},
            "inputs": [{"name": "x", "shape": [8, 3, 48, 192]}],
            "preprocess": {"color": "bgr", "scale": 1 / 255, "mean": [0.5], "std": [0.5]},
            "calibration": {"images": str(photos), "cache": str(work / "cls.cache"), "last_batch": "wrap"},
        }
        configs["cls"] = work / "cls.yaml"
        configs["cls"].write_text(yaml.safe_dump(data))
    if "lite0" in wanted:
        try:
            from classifier import prepare
        except ImportError as exc:  # torch or the EfficientNet packages missing
            print(f"skipping EfficientNet-Lite0: {exc}")
        else:
            prepared = prepare(work / "lite0")
            data = yaml.safe_load(prepared["config"].read_text())
            data["calibration"]["max_images"] = 48
            configs["lite0"] = work / "lite0.yaml"
            configs["lite0"].write_text(yaml.safe_dump(data))
    return configs


def collect(name: str, config_path: Path) -> list[tuple[str, str, TrtHistogram]]:
    config = load_config(config_path)
    run = collect_histograms(config, calibration_entries(config))
    producers = _producers(config.model_path)
    return [
        (tensor, producers.get(tensor, "input"), histogram)
        for tensor, histogram in run.histograms.items()
        if histogram.range > 0
    ]


def compare(model: str, tensor: str, producer: str, histogram: TrtHistogram, modelopt_i: int) -> Pick:
    counts = histogram.counts
    trtq_i = entropy_threshold(histogram).bins_kept
    candidates = np.arange(FIRST_CANDIDATE, counts.size + 1)
    raw, raw_degenerate = kl_divergences(counts, candidates)
    raw = np.where(raw_degenerate, np.inf, raw)
    without_rule = int(candidates[int(np.argmin(raw))]) if np.isfinite(raw).any() else counts.size
    reason, kl_t, kl_m = classify(counts, trtq_i, modelopt_i)
    return Pick(
        model,
        tensor,
        producer,
        float(counts[0] / max(1, counts.sum())),
        histogram.doublings,
        trtq_i,
        modelopt_i,
        without_rule,
        reason,
        kl_t,
        kl_m,
    )


def fixture_indices(picks: list[Pick]) -> list[int]:
    """Per model, ReLU-family outputs whose zero bin dominates first, then others, evenly spread."""
    chosen: list[int] = []
    for model in dict.fromkeys(p.model for p in picks):
        mine = [i for i, p in enumerate(picks) if p.model == model]
        zero_heavy = [i for i in mine if picks[i].producer in RELU_FAMILY and picks[i].zero_share > 0.3]
        others = [i for i in mine if i not in zero_heavy]
        half = FIXTURES_PER_MODEL // 2
        take = zero_heavy[:: max(1, len(zero_heavy) // half)][:half]
        take += others[:: max(1, len(others) // (FIXTURES_PER_MODEL - len(take)))][
            : FIXTURES_PER_MODEL - len(take)
        ]
        chosen += sorted(take)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=["det", "cls", "lite0"], choices=["det", "cls", "lite0"]
    )
    parser.add_argument(
        "--fixtures", type=Path, help="save real histograms with ModelOpt's picks here (.npz)"
    )
    parser.add_argument("--json", type=Path, default=Path("out/bench/entropy_oracle.json"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("out/bench/entropy_oracle_modelopt.json"),
        help="ModelOpt picks by histogram",
    )
    args = parser.parse_args()

    rows: list[tuple[str, str, str, TrtHistogram]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, config_path in model_configs(Path(tmp), args.models).items():
            tensors = collect(model, config_path)
            print(f"{model}: {len(tensors)} non-zero tensors")
            rows += [(model, tensor, producer, histogram) for tensor, producer, histogram in tensors]
    modelopt = modelopt_picks([h.counts for *_, h in rows], args.cache, args.workers)
    picks = [compare(m, t, p, h, i) for (m, t, p, h), i in zip(rows, modelopt, strict=True)]

    console = Console(width=140)
    table = Table(title=f"trtq vs ModelOpt _compute_amax_entropy, same histograms: {machine()}")
    for column in (
        "model",
        "tensors",
        "same i",
        "ties",
        "NaN pick",
        "degenerate",
        "unexplained",
        "ReLU-family at i=128 without the zero-bin rule",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    summary: dict[str, Any] = {}
    for model in dict.fromkeys(p.model for p in picks):
        mine = [p for p in picks if p.model == model]
        relu = [p for p in mine if p.producer in RELU_FAMILY]
        counts = {
            key: sum(1 for p in mine if p.reason.startswith(key))
            for key in ("tie", "ModelOpt's pick keeps no mass", "ModelOpt picked a degenerate", "unexplained")
        }
        summary[model] = {
            "tensors": len(mine),
            "same_i": sum(1 for p in mine if not p.reason),
            **counts,
            "relu_family": len(relu),
            "relu_family_at_128_without_rule": sum(
                1 for p in relu if p.trtq_without_zero_rule == FIRST_CANDIDATE
            ),
            "relu_family_at_128_with_rule": sum(1 for p in relu if p.trtq == FIRST_CANDIDATE),
        }
        s = summary[model]
        table.add_row(
            model,
            str(len(mine)),
            str(s["same_i"]),
            str(counts["tie"]),
            str(counts["ModelOpt's pick keeps no mass"]),
            str(counts["ModelOpt picked a degenerate"]),
            str(counts["unexplained"]),
            f"{s['relu_family_at_128_without_rule']} of {len(relu)} "
            f"(with it: {s['relu_family_at_128_with_rule']})",
        )
    console.print(table)
    for p in picks:
        if p.reason:
            console.print(
                f"{p.model} {p.tensor}: trtq i={p.trtq} (KL {p.kl_trtq_pick:.6g}), "
                f"ModelOpt i={p.modelopt} (KL {p.kl_modelopt_pick:.6g}): {p.reason}"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"machine": machine(), "summary": summary, "picks": [asdict(p) for p in picks]}, indent=1)
    )
    if args.fixtures is not None:
        chosen = fixture_indices(picks)
        args.fixtures.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            args.fixtures,
            counts=np.stack([rows[i][3].counts for i in chosen]),
            modelopt_pick=np.array([picks[i].modelopt for i in chosen]),
            model=np.array([picks[i].model for i in chosen]),
            tensor=np.array([picks[i].tensor for i in chosen]),
            producer=np.array([picks[i].producer for i in chosen]),
        )
        print(f"saved {len(chosen)} histograms with ModelOpt's picks to {args.fixtures}")


if __name__ == "__main__":
    main()
