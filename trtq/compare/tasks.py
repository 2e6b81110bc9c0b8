"""INT8 against FP32 judged by what an output is for, not by its raw values.

A raw cosine can stay at 0.99 while a detector finds half the boxes (class scores hold a tiny share
of the energy next to pixel coordinates) or a recognizer decodes every line to nothing. Each kind
here decodes both outputs the way the application does and scores the INT8 result against FP32's as
if FP32's were the ground truth. Pure NumPy: the same numbers with or without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trtq.compare.outputs import Array, compare_output, cosine
from trtq.config.schema import OutputKind, OutputSpec

Ints = npt.NDArray[np.int64]
MATCH_IOU = 0.5
"""A detection counts as found when it overlaps FP32's of the same class this much (mAP@0.5)."""
RAW = OutputSpec()

PRIMARY = {
    "raw": "cosine",
    "ctc": "char_agreement",
    "yolo": "f1",
    "classes": "top1_agreement",
    "map": "mask_iou",
}
"""The score each kind ranks by: 1 when INT8 does what FP32 does; all but cosine lie in [0, 1]."""


@dataclass(frozen=True)
class TaskMetrics:
    output: str
    kind: OutputKind
    samples: int
    scores: dict[str, float]
    resolution: float = 0.0
    """How much one decision moves the primary score: one box matched or lost (F1), one character
    (character agreement), one position's top-1; 0 for the continuous scores (mask IoU, cosine)."""

    @property
    def metric(self) -> str:
        return PRIMARY[self.kind]

    @property
    def agreement(self) -> float:
        return self.scores[self.metric]

    def to_json(self) -> dict[str, object]:
        return {
            "output": self.output,
            "kind": self.kind,
            "samples": self.samples,
            "metric": self.metric,
            "agreement": self.agreement,
            **{k: v if math.isfinite(v) else str(v) for k, v in self.scores.items()},
        }


# --- CTC sequences -----------------------------------------------------------------------------


def ctc_decode(probabilities: Array, blank: int = 0) -> list[Ints]:
    """Greedy CTC decoding of [N, T, C]: argmax per step, repeats collapsed, blanks dropped."""
    best = np.asarray(probabilities).argmax(axis=2)
    repeated = np.zeros_like(best, dtype=bool)
    repeated[:, 1:] = best[:, 1:] == best[:, :-1]
    keep = ~repeated & (best != blank)
    return [row[mask].astype(np.int64) for row, mask in zip(best, keep, strict=True)]


def edit_distance(a: Sequence[int] | Ints, b: Sequence[int] | Ints) -> int:
    """Levenshtein distance, one row at a time: deletions and substitutions vectorised, then
    insertions along the row as a running minimum of (cost - column) + column."""
    source, target = np.asarray(a), np.asarray(b)
    columns = np.arange(len(target) + 1)
    row = columns.copy()
    for i, symbol in enumerate(source, start=1):
        step = np.empty_like(row)
        step[0] = i
        step[1:] = np.minimum(row[1:] + 1, row[:-1] + (target != symbol))
        row = np.minimum.accumulate(step - columns) + columns
    return int(row[-1])


def sequence_agreement(reference: Sequence[Ints], quantized: Sequence[Ints]) -> dict[str, float]:
    """exact_match: share of samples decoded identically; char_agreement: 1 - edits / FP32's
    characters over all samples (floored at 0), as character accuracy is measured against labels."""
    edits = sum(edit_distance(q, r) for r, q in zip(reference, quantized, strict=True))
    characters = sum(len(r) for r in reference)
    exact = sum(1 for r, q in zip(reference, quantized, strict=True) if np.array_equal(r, q))
    char_agreement = max(0.0, 1.0 - edits / characters) if characters else float(edits == 0)
    return {
        "char_agreement": char_agreement,
        "exact_match": exact / max(len(reference), 1),
        "fp32_characters": float(characters),
    }


# --- detections --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes as x1, y1, x2, y2."""

    boxes: Array
    scores: Array
    classes: Ints


def box_iou(a: Array, b: Array) -> Array:
    """IoU of every box in ``a`` [n, 4] with every box in ``b`` [m, 4] (x1, y1, x2, y2)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def nms(boxes: Array, scores: Array, classes: Ints, iou: float) -> Ints:
    """Class-wise greedy NMS: indices kept, best score first. Boxes of different classes never
    suppress each other (each class is moved beyond every other class's boxes, as YOLO's NMS does)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    offset = (classes.astype(np.float32) * (2 * float(np.abs(boxes).max()) + 1))[:, None]
    shifted = boxes + offset
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        first = int(order[0])
        kept.append(first)
        rest = order[1:]
        order = rest[box_iou(shifted[first : first + 1], shifted[rest])[0] <= iou]
    return np.asarray(kept, dtype=np.int64)


def yolo_detections(output: Array, conf: float, iou: float) -> list[Detections]:
    """[N, 4+C, A] (cx, cy, w, h, class scores per anchor) -> per image: boxes whose best class
    score is at least ``conf``, after class-wise NMS at ``iou``."""
    found = []
    for image in np.asarray(output, dtype=np.float32):
        scores_all = image[4:]
        classes = scores_all.argmax(axis=0)
        scores = scores_all.max(axis=0)
        keep = scores >= conf
        cx, cy, w, h = image[:4, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        chosen = nms(boxes, scores[keep], classes[keep].astype(np.int64), iou)
        found.append(Detections(boxes[chosen], scores[keep][chosen], classes[keep][chosen].astype(np.int64)))
    return found


def match(reference: Detections, found: Detections, threshold: float = MATCH_IOU) -> npt.NDArray[np.bool_]:
    """Per detection in ``found`` (best score first, as COCO matches): whether it takes an unmatched
    reference box of its class with IoU >= ``threshold`` (the best-overlapping one)."""
    order = np.argsort(-found.scores, kind="stable")
    overlap = box_iou(found.boxes, reference.boxes)
    overlap[found.classes[:, None] != reference.classes[None, :]] = -1
    taken = np.zeros(len(reference.boxes), dtype=bool)
    hit = np.zeros(len(found.boxes), dtype=bool)
    for index in order:
        candidates = np.where(taken, -1, overlap[index])
        if candidates.size and candidates.max() >= threshold:
            taken[int(candidates.argmax())] = True
            hit[index] = True
    return hit


def average_precision(hits: npt.NDArray[np.bool_], scores: Array, positives: int) -> float:
    """Area under the precision-recall curve with precision made non-increasing (all-point
    interpolation, as VOC 2010+ and COCO's per-threshold AP before its 101-point sampling)."""
    order = np.argsort(-scores, kind="stable")
    true = np.cumsum(hits[order])
    precision = true / np.arange(1, len(order) + 1)
    recall = true / positives
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def detection_agreement(reference: Sequence[Detections], found: Sequence[Detections]) -> dict[str, float]:
    """F1 of INT8's detections matched to FP32's, and mAP@0.5 with FP32's detections as ground truth
    (classes FP32 never detected do not count in mAP; they are false positives in F1)."""
    hits = [match(r, f) for r, f in zip(reference, found, strict=True)]
    n_ref = sum(len(r.boxes) for r in reference)
    n_found = sum(len(f.boxes) for f in found)
    true = int(sum(h.sum() for h in hits))
    f1 = 1.0 if n_ref + n_found == 0 else 2 * true / (n_ref + n_found)
    all_hits = np.concatenate([np.zeros(0, dtype=bool), *hits])
    all_scores = np.concatenate([np.zeros(0, dtype=np.float32), *(f.scores for f in found)])
    all_classes = np.concatenate([np.zeros(0, dtype=np.int64), *(f.classes for f in found)])
    ref_classes = np.concatenate([np.zeros(0, dtype=np.int64), *(r.classes for r in reference)])
    aps = []
    for cls in np.unique(ref_classes):
        mine = all_classes == cls
        aps.append(average_precision(all_hits[mine], all_scores[mine], int(np.sum(ref_classes == cls))))
    map50 = float(np.mean(aps)) if aps else (1.0 if n_found == 0 else 0.0)
    return {
        "f1": f1,
        "map50": map50,
        "fp32_detections": float(n_ref),
        "int8_detections": float(n_found),
    }


# --- classes and maps --------------------------------------------------------------------------


def class_agreement(reference: Array, quantized: Array) -> dict[str, float]:
    """Top-1 agreement along the last axis (every other axis is samples or positions), and top-5
    (FP32's top-1 in INT8's top 5) when there are more than 5 classes."""
    classes = reference.shape[-1]
    ref = reference.reshape(-1, classes)
    out = quantized.reshape(-1, classes)
    fp32_top1 = ref.argmax(axis=1)
    scores = {"top1_agreement": float(np.mean(out.argmax(axis=1) == fp32_top1))}
    if classes > 5:
        top5 = np.argpartition(-out, 5, axis=1)[:, :5]
        scores["top5_agreement"] = float(np.mean((top5 == fp32_top1[:, None]).any(axis=1)))
    return scores


def map_agreement(reference: Array, quantized: Array, threshold: float) -> dict[str, float]:
    """IoU of the masks above ``threshold`` over all samples (1 when both are empty), and cosine."""
    ref_mask, out_mask = reference > threshold, quantized > threshold
    union = int(np.sum(ref_mask | out_mask))
    iou = 1.0 if union == 0 else int(np.sum(ref_mask & out_mask)) / union
    return {"mask_iou": iou, "cosine": compare_output("", reference, quantized).cosine}


# --- one output, one model ---------------------------------------------------------------------


def shape_problem(kind: OutputKind, shape: Sequence[int]) -> str | None:
    """Why an output of ``shape`` cannot be judged as ``kind`` (None when it can)."""
    if kind == "ctc" and len(shape) != 3:
        return f"ctc needs [N, T, classes] probabilities, the output has shape {list(shape)}"
    if kind == "yolo" and (len(shape) != 3 or shape[1] < 5 or shape[1] >= shape[2]):
        return (
            f"yolo needs [N, 4 + classes, anchors] (fewer rows than anchors, as YOLOv5/v8 exports), "
            f"the output has shape {list(shape)}"
        )
    if kind == "classes" and (len(shape) < 2 or shape[-1] < 2):
        return f"classes needs scores along a last axis of 2 or more, the output has shape {list(shape)}"
    return None


def judge_output(name: str, spec: OutputSpec, reference: Array, quantized: Array) -> TaskMetrics:
    """One output's scores under its declared kind; ``reference`` is FP32's, samples along axis 0."""
    samples = int(reference.shape[0])
    scores: dict[str, float]
    resolution = 0.0
    if spec.kind == "ctc":
        scores = sequence_agreement(ctc_decode(reference, spec.blank), ctc_decode(quantized, spec.blank))
        resolution = 1 / max(scores["fp32_characters"], 1)
    elif spec.kind == "yolo":
        scores = detection_agreement(
            yolo_detections(reference, spec.conf, spec.iou), yolo_detections(quantized, spec.conf, spec.iou)
        )
        # beside F1, the raw figure it replaces: on a real YOLOv8n the cosine stays above 0.99 for
        # models whose F1 differs by 0.1 and more (docs/accuracy.md), so show both
        scores["cosine"] = compare_output(name, reference, quantized).cosine
        resolution = 2 / max(scores["fp32_detections"] + scores["int8_detections"], 1)
    elif spec.kind == "classes":
        scores = class_agreement(reference, quantized)
        resolution = reference.shape[-1] / max(reference.size, 1)  # one of the positions judged
    elif spec.kind == "map":
        scores = map_agreement(reference, quantized, spec.threshold)
    else:
        raw = compare_output(name, reference, quantized)
        scores = {"cosine": raw.cosine, "snr_db": raw.snr_db}
    return TaskMetrics(name, spec.kind, samples, scores, resolution)


def judge_model(
    specs: Mapping[str, OutputSpec], reference: Mapping[str, Array], quantized: Mapping[str, Array]
) -> list[TaskMetrics]:
    """Every output judged by its declared kind (raw when none is declared)."""
    return [judge_output(n, specs.get(n, RAW), reference[n], quantized[n]) for n in reference]


def output_cosine(reference: Mapping[str, Array], other: Mapping[str, Array]) -> float:
    """Cosine of all outputs, flattened and joined, against FP32's."""
    ref = np.concatenate([reference[k].astype(np.float64).ravel() for k in reference])
    out = np.concatenate([other[k].astype(np.float64).ravel() for k in reference])
    return cosine(ref, out)


@dataclass(frozen=True)
class Agreement:
    """One number to rank INT8 models by, what it is, and every output's scores."""

    value: float
    metric: str
    outputs: list[TaskMetrics]
    resolution: float = 0.0
    """The ranking output's (TaskMetrics.resolution)."""

    def to_json(self) -> dict[str, object]:
        return {
            "agreement": self.value,
            "metric": self.metric,
            "outputs": [m.to_json() for m in self.outputs],
        }


def agreement(
    specs: Mapping[str, OutputSpec], reference: Mapping[str, Array], quantized: Mapping[str, Array]
) -> Agreement:
    """The worst task score when any output has a task kind, else the cosine of all outputs."""
    metrics = judge_model(specs, reference, quantized)
    tasks = [m for m in metrics if m.kind != "raw"]
    if tasks:
        worst = min(tasks, key=lambda m: m.agreement)
        return Agreement(worst.agreement, f"{worst.metric} of {worst.output}", metrics, worst.resolution)
    return Agreement(output_cosine(reference, quantized), "cosine of all outputs", metrics)


def suggested_kind(name: str, reference: Array) -> str | None:
    """A note for an output with no declared kind that clearly has a class axis."""
    shape = list(reference.shape)
    if len(shape) == 3 and shape[2] > 5 and _rows_are_probabilities(reference):
        return (
            f"output '{name}' {shape} holds a probability per step and class (a sequence recognizer's, "
            f"like CTC): declare `outputs: {{{name}: {{kind: ctc, blank: 0}}}}` to judge decoded sequences"
        )
    if len(shape) == 3 and 5 <= shape[1] < shape[2] // 4 and _looks_like_yolo(reference):
        return (
            f"output '{name}' {shape} looks like a YOLO head ([N, 4 + classes, anchors]): declare "
            f"`outputs: {{{name}: {{kind: yolo}}}}` to judge detections (F1, mAP@0.5 against FP32)"
        )
    if len(shape) == 4 and shape[1] == 1 and float(reference.min()) >= 0 and float(reference.max()) <= 1:
        return (
            f"output '{name}' {shape} looks like a probability map: declare "
            f"`outputs: {{{name}: {{kind: map, threshold: 0.3}}}}` to judge the thresholded masks"
        )
    return None


def _rows_are_probabilities(values: Array) -> bool:
    sums = values.reshape(-1, values.shape[-1]).sum(axis=1, dtype=np.float64)
    return bool(float(values.min()) >= 0 and np.allclose(sums, 1.0, atol=1e-2))


def _looks_like_yolo(values: Array) -> bool:
    """Widths and heights (rows 2, 3) not negative, class scores (rows 4..) within [0, 1]."""
    scores = values[:, 4:]
    return bool(float(values[:, 2:4].min()) >= 0 and float(scores.min()) >= 0 and float(scores.max()) <= 1)
