"""Task metrics (trtq/compare/tasks.py) against hand-derived values, plain reference implementations
written here differently (loops, sets, per-box), and a real recognizer's outputs decoded by the
decoder rapidocr ships."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

from trtq.compare.tasks import (
    Detections,
    agreement,
    average_precision,
    class_agreement,
    ctc_decode,
    detection_agreement,
    edit_distance,
    judge_output,
    map_agreement,
    nms,
    sequence_agreement,
    suggested_kind,
    yolo_detections,
)
from trtq.config.schema import OutputSpec
from trtq.resources import resolve_path

REPO = Path(__file__).resolve().parent.parent


def plain_edit_distance(a: list[int] | str, b: list[int] | str) -> int:
    """The textbook dynamic programme, the whole table in lists."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        table[i][0] = i
    for j in range(len(b) + 1):
        table[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(
                table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            )
    return table[len(a)][len(b)]


def plain_iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def plain_nms(boxes: list[list[float]], scores: list[float], classes: list[int], iou: float) -> list[int]:
    """Per class, box by box: a box survives when no better-scoring survivor overlaps it more than iou."""
    kept: list[int] = []
    for index in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(classes[k] != classes[index] or plain_iou(boxes[k], boxes[index]) <= iou for k in kept):
            kept.append(index)
    return kept


def plain_ap(hits: list[bool], scores: list[float], positives: int) -> float:
    """AP as the sum over each recall level reached of (recall step) x (best precision at or beyond it)."""
    ranked = [h for _, h in sorted(zip(scores, hits, strict=True), key=lambda p: -p[0])]
    points = []
    found = 0
    for rank, hit in enumerate(ranked, start=1):
        found += hit
        points.append((found / positives, found / rank))
    total, previous = 0.0, 0.0
    for recall, _ in points:
        if recall > previous:
            total += (recall - previous) * max(p for r, p in points if r >= recall)
            previous = recall
    return total


def test_ctc_decode_by_hand() -> None:
    steps = [0, 3, 3, 0, 3, 5, 5, 0, 0, 2]  # -> 3, 3, 5, 2: the blank between the 3s keeps both
    probabilities = np.full((1, len(steps), 6), 0.01, dtype=np.float32)
    probabilities[0, np.arange(len(steps)), steps] = 0.9
    assert ctc_decode(probabilities, blank=0)[0].tolist() == [3, 3, 5, 2]
    assert ctc_decode(probabilities, blank=3)[0].tolist() == [0, 0, 5, 0, 2]


def test_edit_distance_against_the_textbook_programme() -> None:
    assert edit_distance([1, 2, 3], []) == 3
    assert edit_distance([], [4]) == 1
    assert edit_distance(list(b"kitten"), list(b"sitting")) == 3
    rng = random.Random(5)
    for _ in range(300):
        a = [rng.randrange(4) for _ in range(rng.randrange(12))]
        b = [rng.randrange(4) for _ in range(rng.randrange(12))]
        assert edit_distance(a, b) == plain_edit_distance(a, b), (a, b)


def test_sequence_agreement_by_hand() -> None:
    ref = [np.array(s, dtype=np.int64) for s in ([1, 2, 3, 4], [5, 6], [7])]
    out = [np.array(s, dtype=np.int64) for s in ([1, 2, 3, 4], [5], [8, 8, 8])]
    scores = sequence_agreement(ref, out)
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["char_agreement"] == pytest.approx(1 - (0 + 1 + 3) / 7)
    assert sequence_agreement(ref, [np.zeros(0, dtype=np.int64)] * 3)["char_agreement"] == 0.0


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    corner = rng.uniform(-30, 60, size=(n, 2))  # boxes past the left and top edges too
    return np.concatenate([corner, corner + rng.uniform(5, 40, size=(n, 2))], axis=1).astype(np.float32)


def test_nms_against_a_per_box_reference() -> None:
    # a class-1 box exactly one max-coordinate-plus-one left of a class-0 box: kept all the same
    hand = np.array([[50, 50, 60, 60], [-11, -11, -1, -1]], dtype=np.float32)
    assert nms(hand, np.array([0.9, 0.8], dtype=np.float32), np.array([0, 1]), 0.45).tolist() == [0, 1]
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(0, 30))
        boxes, scores = random_boxes(rng, n), rng.permutation(n).astype(np.float32)
        classes = rng.integers(0, 3, size=n)
        kept = nms(boxes, scores, classes, 0.45).tolist()
        assert kept == plain_nms(boxes.tolist(), scores.tolist(), classes.tolist(), 0.45)


def test_yolo_detections_by_hand() -> None:
    # three anchors, 2 classes: two overlapping class-0 boxes (the weaker is suppressed), a class-1
    # box on top of them (another class: kept), and one below conf.
    head = np.zeros((1, 6, 4), dtype=np.float32)
    head[0, :4] = [[50, 50, 40, 40], [52, 50, 40, 40], [50, 50, 40, 40], [50, 50, 40, 10]]  # cx, cy, w, h
    head[0, 4] = [0.9, 0.8, 0.1, 0.1]
    head[0, 5] = [0.0, 0.0, 0.7, 0.2]
    found = yolo_detections(head, conf=0.25, iou=0.45)[0]
    assert found.classes.tolist() == [0, 1]
    assert found.scores.tolist() == pytest.approx([0.9, 0.7])
    assert found.boxes.tolist() == [[25, 27, 75, 77], [20, 20, 60, 60]]


def detections(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Detections:
    return Detections(
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(scores, dtype=np.float32),
        np.array(classes, dtype=np.int64),
    )


def test_detection_agreement_by_hand() -> None:
    """FP32 found 3 boxes in 2 images; INT8 found 2 of them (one with the wrong class) and a
    spurious one: 1 true positive, F1 = 2 * 1 / (3 + 3)."""
    reference = [
        detections([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 1]),
        detections([[0, 0, 10, 10]], [0.9], [0]),
    ]
    found = [
        detections([[1, 0, 11, 10], [20, 20, 30, 30]], [0.7, 0.6], [0, 0]),  # 2nd: right box, wrong class
        detections([[50, 50, 60, 60]], [0.95], [0]),
    ]
    scores = detection_agreement(reference, found)
    assert scores["f1"] == pytest.approx(2 / 6)
    # class 0: 2 FP32 boxes; INT8 ranked 0.95 (miss), 0.7 (hit), 0.6 (miss): recall 0.5 at
    # precision 1/2 -> AP 0.25. class 1: 1 FP32 box, no INT8 detection -> AP 0.
    assert scores["map50"] == pytest.approx((0.25 + 0.0) / 2)
    assert detection_agreement(reference, reference) == {
        "f1": 1.0,
        "map50": 1.0,
        "fp32_detections": 3.0,
        "int8_detections": 3.0,
    }


def test_average_precision_against_a_plain_reference() -> None:
    rng = random.Random(11)
    for _ in range(200):
        n = rng.randrange(1, 20)
        hits = [rng.random() < 0.5 for _ in range(n)]
        scores = [rng.random() for _ in range(n)]
        positives = sum(hits) + rng.randrange(3)
        if positives == 0:
            continue
        ours = average_precision(np.array(hits), np.array(scores, dtype=np.float32), positives)
        assert ours == pytest.approx(plain_ap(hits, scores, positives))


def test_class_and_map_agreement_by_hand() -> None:
    ref = np.array([[[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]], dtype=np.float32)  # [1, 2 positions, 3 classes]
    out = np.array([[[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]]], dtype=np.float32)
    assert class_agreement(ref, out) == {"top1_agreement": 0.5}
    ref_map = np.array([[[[0.9, 0.1], [0.5, 0.2]]]], dtype=np.float32)
    out_map = np.array([[[[0.8, 0.4], [0.2, 0.1]]]], dtype=np.float32)
    # masks at 0.3: FP32 {(0,0), (1,0)}, INT8 {(0,0), (0,1)}: 1 shared of 3
    assert map_agreement(ref_map, out_map, 0.3)["mask_iou"] == pytest.approx(1 / 3)


def text_lines_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("text_lines", REPO / "calibrators" / "text_lines.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ctc_on_the_real_recognizer(tmp_path: Path) -> None:
    """FP32 outputs of PP-OCRv4's recognizer on rendered lines decode to the rendered text; blurred
    lines decode to other text, and the agreement of the two is the one rapidocr's decoder and the
    textbook edit distance give."""
    lines = text_lines_module()
    made = lines.make_lines(tmp_path, 12, seed=7)
    model = resolve_path("pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", REPO)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    characters = session.get_modelmeta().custom_metadata_map["character"].splitlines()
    decoder = CTCLabelDecode(character=characters)
    images = np.stack([lines.cv2.imread(str(path)) for path, _ in made])
    blurred = np.stack([lines.cv2.GaussianBlur(image, (0, 0), 2.2) for image in images])

    def infer(batch: np.ndarray) -> np.ndarray:
        x = (batch.astype(np.float32).transpose(0, 3, 1, 2) / 255 - 0.5) / 0.5
        return np.asarray(session.run(None, {"x": x})[0])

    fp32, degraded = infer(images), infer(blurred)
    texts = [text for _, text in made]
    ours = ["".join(decoder.character[c] for c in seq) for seq in ctc_decode(fp32, blank=0)]
    assert ours == texts == [text for text, _ in decoder(fp32)]
    theirs = [text for text, _ in decoder(degraded)]
    assert theirs != texts  # the blur changes some lines
    edits = sum(plain_edit_distance(t, r) for t, r in zip(theirs, texts, strict=True))
    scores = judge_output("softmax_11.tmp_0", OutputSpec(kind="ctc"), fp32, degraded).scores
    assert scores["char_agreement"] == pytest.approx(1 - edits / sum(len(t) for t in texts))
    assert scores["exact_match"] == pytest.approx(
        np.mean([a == b for a, b in zip(theirs, texts, strict=True)])
    )
    assert "kind: ctc" in (suggested_kind("softmax_11.tmp_0", fp32) or "")  # probabilities per step
    assert suggested_kind("logits", np.log(fp32 + 1e-9)) is None  # log-probabilities: no box rows either
    # a model that outputs only blanks (the quiet collapse) keeps a cosine far above 0 and agrees on nothing
    dead = np.zeros_like(fp32)
    dead[:, :, 0] = 1
    result = agreement({"out": OutputSpec(kind="ctc")}, {"out": fp32}, {"out": dead})
    assert result.value == 0.0 and result.metric == "char_agreement of out"


def test_map_on_the_real_detector() -> None:
    """PP-OCRv4's text detector on a real photo of text, and on the same photo blurred: the mask IoU
    is the one counted pixel by pixel as sets of coordinates."""
    import cv2

    model = resolve_path("pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", REPO)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    photo = cv2.resize(cv2.imread(str(resolve_path("pkg:skimage/data/page.png", REPO))), (320, 320))

    def infer(image: np.ndarray) -> np.ndarray:
        x = (image.astype(np.float32).transpose(2, 0, 1)[None] / 255 - 0.5) / 0.5
        return np.asarray(session.run(None, {"x": x})[0])

    sharp, blurred = infer(photo), infer(cv2.GaussianBlur(photo, (0, 0), 1.5))
    ours = judge_output("sigmoid_0.tmp_0", OutputSpec(kind="map", threshold=0.3), sharp, blurred).scores
    a = {tuple(p) for p in np.argwhere(sharp > 0.3)}
    b = {tuple(p) for p in np.argwhere(blurred > 0.3)}
    assert len(a) > 1000 and a != b  # text found, and the blur moves it
    assert ours["mask_iou"] == pytest.approx(len(a & b) / len(a | b))
    assert 0 < ours["mask_iou"] < 1
