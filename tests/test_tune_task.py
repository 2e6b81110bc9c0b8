"""trtq tune judged by the declared task metric (issue 18): the rule that decides what is kept, and
the task agreements tune reports, recomputed here from scratch on the real PP-OCR text classifier."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from conftest import TEXT_CLASSIFIER, WriteConfig, classifier_config, listed_photos, preprocessed_by_hand
from typer.testing import CliRunner

from trtq.calib.run import collect_histograms
from trtq.cli.main import app
from trtq.compare.tasks import Agreement
from trtq.config import load_config
from trtq.data.from_config import batch_source, calibration_entries
from trtq.model.files import load_onnx
from trtq.model.runner import OnnxRunner
from trtq.qdq.export import export_qdq
from trtq.resources import resolve_path
from trtq.tune.judge import Judge, Measured
from trtq.tune.pipeline import validation_positions
from trtq.tune.search_model import Evaluator, Score, search_model
from trtq.tune.steps import choose_start
from trtq.tune.thresholds import candidate_scales, search_thresholds

runner = CliRunner()


class Scripted:
    """Stands in for an Evaluator: returns the next scripted score for each run."""

    def __init__(self, *scores: Score) -> None:
        self.scores = list(scores)

    def score(self, _scales: Mapping[str, float], _gates: Mapping[str, float], _stop: float = 0.0) -> Score:
        return self.scores.pop(0)


CASES = [
    # (best task, best error) -> (trial task, trial error): kept?
    ((0.80, 0.10), (0.70, 0.01), False),  # the raw error drops tenfold, the task gets worse: refused
    ((0.80, 0.10), (0.90, 0.30), False),  # the task improves, the output drifts: no trade either
    ((0.80, 0.10), (0.90, 0.10), True),  # the task improves, the error holds
    ((0.80, 0.10), (0.90, 0.05), True),
    ((0.80, 0.10), (0.80, 0.05), True),  # the task holds, the error drops
    ((0.80, 0.10), (0.80, 0.20), False),
    ((0.80, 0.10), (0.80, 0.10), False),  # no change is no improvement
]


@pytest.mark.parametrize(("best", "trial", "kept"), CASES)
def test_neither_the_task_nor_the_error_is_traded_for_the_other(
    best: tuple[float, float], trial: tuple[float, float], kept: bool
) -> None:
    before = Measured(Score(best[1], 0.9, task=best[0]), None)
    judge = Judge(Scripted(Score(trial[1], 0.9, task=trial[0])), None)  # type: ignore[arg-type]
    assert judge.challenge({}, {}, before).kept is kept


def test_without_a_task_the_error_alone_decides() -> None:
    before = Measured(Score(0.10, 0.9), None)
    assert Judge(Scripted(Score(0.09, 0.9)), None).challenge({}, {}, before).kept  # type: ignore[arg-type]
    assert not Judge(Scripted(Score(0.11, 0.9)), None).challenge({}, {}, before).kept  # type: ignore[arg-type]


@pytest.mark.parametrize(("best", "trial", "kept"), CASES)
def test_validation_batches_apply_the_same_rule(
    best: tuple[float, float], trial: tuple[float, float], kept: bool
) -> None:
    """A change better on the search batches is kept only if it is better on the validation batches
    by the same rule; one worse there is rejected by validation."""
    good_search = Score(0.01, 0.9, task=1.0)
    before = Measured(Score(0.5, 0.9, task=0.5), Score(best[1], 0.9, task=best[0]))
    search, validation = Scripted(good_search), Scripted(Score(trial[1], 0.9, task=trial[0]))
    verdict = Judge(search, validation).challenge({}, {}, before)  # type: ignore[arg-type]
    assert (verdict.kept, verdict.rejected_by_validation) == (kept, not kept)


def test_pooled_error_sums_both_parts() -> None:
    measured = Measured(
        Score(0.1, 0.9, noise=1.0, energy=10.0, task=1.0),
        Score(0.3, 0.9, noise=3.0, energy=10.0, task=0.5),
    )
    assert measured.pooled_error == pytest.approx(4.0 / 20.0)


def _top1_agreement(model_path: Path, lines: list[str]) -> float:
    """Top-1 agreement with FP32, computed here: ONNX Runtime on images preprocessed by hand."""
    batch = preprocessed_by_hand(lines)
    fp32 = ort.InferenceSession(str(resolve_path(TEXT_CLASSIFIER, Path.cwd())))
    tuned = ort.InferenceSession(
        str(model_path), providers=["CPUExecutionProvider"], disabled_optimizers=["WeightBiasQuantization"]
    )
    ref = np.concatenate([fp32.run(None, {"x": batch[i : i + 2]})[0] for i in range(0, len(batch), 2)])
    out = np.concatenate([tuned.run(None, {"x": batch[i : i + 2]})[0] for i in range(0, len(batch), 2)])
    return float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1)))


def test_reported_task_agreements_are_the_models_own(tmp_path: Path) -> None:
    """With `outputs: {kind: classes}` tune's steps and its held-out table carry the top-1 agreement;
    the last step's (search batches) and the held-out one are what the written Q/DQ model really does."""
    photos, heldout = listed_photos(6), listed_photos(6, start=6)
    (tmp_path / "images.txt").write_text("\n".join(photos) + "\n")
    (tmp_path / "heldout.txt").write_text("\n".join(heldout) + "\n")
    config = classifier_config("images.txt", "model.cache")
    output = load_onnx(resolve_path(TEXT_CLASSIFIER, tmp_path)).graph.output[0].name
    config["outputs"] = {output: {"kind": "classes"}}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(
        app,
        [
            "tune",
            str(tmp_path / "model.yaml"),
            "--tune-images",
            str(tmp_path / "images.txt"),
            "--images",
            str(tmp_path / "heldout.txt"),
            "-o",
            str(tmp_path / "out" / "tuned.qdq.onnx"),
            "--max-float-layers",
            "1",
            "--search-batches",
            "2",
            "--validation-batches",
            "1",
            "--time-limit-s",
            "0",  # the whole search: what it finds must not depend on the machine's speed
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Task agreement with FP32 on 6 held-out images" in result.output
    data = json.loads((tmp_path / "out" / "tuned.tune.json").read_text())
    assert all(step["task_agreement"] is not None for step in data["steps"])
    held = set(validation_positions(3, 1, 2))
    search = [p for i in range(3) if i not in held for p in photos[2 * i : 2 * i + 2]][:4]
    qdq = tmp_path / "out" / "tuned.qdq.onnx"
    assert data["steps"][-1]["task_agreement"] == pytest.approx(_top1_agreement(qdq, search))
    agreement = data["heldout"]["agreement"]["tuned INT8"]
    assert agreement["metric"] == f"top1_agreement of {output}"
    assert agreement["agreement"] == pytest.approx(_top1_agreement(qdq, heldout))


def test_a_run_stopped_early_is_a_lower_bound_and_never_better(write_config: WriteConfig) -> None:
    """On the real text classifier: a search run told to stop once its squared error passes a bound
    runs fewer batches, reports an error no higher than the whole run's (the rest only adds), and is
    never judged better than a score with that bound."""
    config = load_config(write_config(8))
    entries = calibration_entries(config)
    batches = [b.data for b in batch_source(config, entries)]
    model = load_onnx(config.model_path)
    minmax = collect_histograms(config, entries).scales("minmax")
    exported = export_qdq(model, minmax)
    activations = list(exported.activation_scales)
    reference = [OnnxRunner(model).infer({"x": b}) for b in batches]
    searched = search_model(exported.model, activations, {}, [])
    evaluator = Evaluator(searched, "x", batches, reference)
    coarse = {t: 4 * minmax[t] for t in activations}  # a bad setting: 4x the steps
    whole = evaluator.score(coarse, {})
    first = Evaluator(searched, "x", batches[:1], reference[:1]).score(coarse, {})
    inferred = []
    infer = evaluator.runner.infer
    evaluator.runner.infer = lambda feed: inferred.append(1) or infer(feed)  # type: ignore[method-assign]
    stopped = evaluator.score(coarse, {}, stop_above=first.noise / evaluator.energy / 2)
    assert len(batches) == 4 and len(inferred) == 1
    assert stopped.partial and not whole.partial
    assert stopped.noise == pytest.approx(first.noise, rel=1e-9) and stopped.error <= whole.error
    bound = Score(stopped.noise / 2 / evaluator.energy, 0.9, stopped.noise / 2, evaluator.energy, 1.0)
    assert not stopped.improves_on(bound)


def test_stopping_runs_early_changes_no_choice_of_the_threshold_search(write_config: WriteConfig) -> None:
    """The same search on the real text classifier, with the early stop and without it: the same
    thresholds kept, in the same order, the same final error; only fewer batches run."""
    config = load_config(write_config(8))
    entries = calibration_entries(config)
    batches = [b.data for b in batch_source(config, entries)]
    model = load_onnx(config.model_path)
    run = collect_histograms(config, entries)
    exported = export_qdq(model, run.scales("entropy"))
    activations = list(exported.activation_scales)[:20]
    start = {t: run.scales("entropy")[t] for t in exported.activation_scales}
    reference = [OnnxRunner(model).infer({"x": b}) for b in batches]
    searched = search_model(exported.model, list(exported.activation_scales), {}, [])
    candidates = candidate_scales(run, activations)

    class Whole(Judge):
        def challenge(self, scales, gates, best, stop_early=False):  # type: ignore[no-untyped-def]
            return super().challenge(scales, gates, best, False)

    results = []
    for judge_type in (Judge, Whole):
        judge = judge_type(
            Evaluator(searched, "x", batches[:3], reference[:3]),
            Evaluator(searched, "x", batches[3:], reference[3:]),
        )
        found = search_thresholds(judge, start, "entropy", candidates, {})
        results.append(([(s.tensor, s.label) for s in found.steps], found.scales, found.score.error))
    assert results[0] == results[1] and results[0][0]  # something was kept


def _measured(error: float) -> Measured:
    return Measured(Score(error, 0.9, noise=error, energy=1.0), None)


def _agreement(value: float, resolution: float) -> Agreement:
    return Agreement(value, "f1 of output0", [], resolution)


@pytest.mark.parametrize(
    ("union", "expected"),
    [
        # The YOLOv8n case: entropy leads mse by about one box (resolution 0.025) at three times the
        # error; within two boxes the error decides.
        ({"entropy": 0.873, "minmax": 0.817, "percentile": 0.80, "mse": 0.837}, "mse"),
        # Far apart (the detector: minmax finds what the others lose): the task decides.
        ({"entropy": 0.08, "minmax": 0.837, "percentile": 0.47, "mse": 0.576}, "minmax"),
        (dict.fromkeys(("entropy", "minmax", "percentile", "mse"), None), "mse"),  # no task: the error
    ],
)
def test_the_start_is_the_best_task_agreement_with_close_ones_tied(
    union: dict[str, float | None], expected: str
) -> None:
    errors = {"entropy": 0.00215, "minmax": 0.0008, "percentile": 0.0009, "mse": 0.0007}
    agreements = {a: None if v is None else _agreement(v, 0.025) for a, v in union.items()}
    assert choose_start({a: _measured(e) for a, e in errors.items()}, agreements) == expected  # type: ignore[arg-type]
