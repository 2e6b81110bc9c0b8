"""tune's progress: every stage gets exactly as many advances as the units it announced (the bar showed
71/70 where a wrapped last batch or a rejected float layer was not counted, and stopped short where
the float-layer search ended early). Counted on a real tune run and on the float-layer search with a
judge whose verdicts are set by hand; test_tune.py counts every stage of its full run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from conftest import classifier_config, listed_photos

from trtq.config import load_config
from trtq.data.from_config import calibration_entries
from trtq.tune.judge import Measured, Verdict
from trtq.tune.mixed import choose_float_layers
from trtq.tune.pipeline import ProgressHooks, TuneSettings, tune
from trtq.tune.search_model import Score


class Counter:
    """Stages in order as [name, units, advances]."""

    def __init__(self) -> None:
        self.stages: list[list[object]] = []

    def stage(self, name: str, units: int) -> None:
        self.stages.append([name, units, 0])

    def advance(self) -> None:
        self.stages[-1][2] += 1  # type: ignore[operator]

    @property
    def mismatched(self) -> list[list[object]]:
        return [entry for entry in self.stages if entry[1] != entry[2]]


class Stop(Exception):
    """Raised at the second stage: the first is all a test needs of a tune run."""


@pytest.mark.parametrize("missing", [False, True], ids=["wrap", "wrap-and-skip"])
def test_the_calibration_pass_counts_a_wrapped_last_batch(tmp_path: Path, missing: bool) -> None:
    """3 photos in batches of 2 with last_batch: wrap make 2 calibration batches (the old total said
    1); with a missing image skipped, 2 usable images make 1 batch and the stage still ends at its
    total. The other stages are counted on test_tune.py's full run."""
    lines = listed_photos(3 if not missing else 2) + (["missing.png"] if missing else [])
    (tmp_path / "images.txt").write_text("\n".join(lines) + "\n")
    data = classifier_config("images.txt", "model.cache", last_batch="wrap", on_bad_image="skip")
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(data))
    config = load_config(tmp_path / "model.yaml")
    counter = Counter()

    def stage(name: str, units: int) -> None:
        if counter.stages:
            raise Stop
        counter.stage(name, units)

    settings = TuneSettings(max_float_layers=1, search_batches=1)
    with pytest.raises(Stop):
        tune(config, calibration_entries(config), settings, ProgressHooks(stage, counter.advance))
    assert counter.stages == [["calibration pass (batches)", 2, 2]]


class ScriptedJudge:
    """Layer i alone removes error 0.1 * (i + 1) (so the ranking is the reverse of the list); each
    challenge is kept or rejected as ``verdicts`` says, in order."""

    def __init__(self, nodes: list[str], verdicts: list[bool], start_error: float = 1.0) -> None:
        self.search = self
        self.nodes = nodes
        self.verdicts = iter(verdicts)
        self.start = Measured(Score(start_error, 0.5), None)

    def measure(self, scales: Mapping[str, float], gates: Mapping[str, float]) -> Measured:
        return self.start

    def score(self, scales: Mapping[str, float], gates: Mapping[str, float]) -> Score:
        floated = [i for i, node in enumerate(self.nodes) if gates[node] == 0.0]
        return Score(1.0 - sum(0.1 * (i + 1) for i in floated), 0.5)

    def challenge(
        self,
        scales: Mapping[str, float],
        gates: Mapping[str, float],
        best: Measured,
        stop_early: bool = False,
    ) -> Verdict:
        kept = next(self.verdicts)
        return Verdict(Measured(Score(best.error * (0.5 if kept else 1.5), 0.5), None), kept)


def run_counted(nodes: list[str], verdicts: list[bool], budget: int) -> tuple[Counter, list[str]]:
    counter = Counter()
    judge = ScriptedJudge(nodes, verdicts)
    result = choose_float_layers(
        judge,  # type: ignore[arg-type]
        {},
        nodes,
        budget,
        None,
        counter.stage,
        counter.advance,
    )
    return counter, result.float_nodes


def test_rejected_layers_count_and_an_early_end_completes_the_stage() -> None:
    nodes = [f"conv{i}" for i in range(6)]
    # Budget 2: conv5 rejected, conv4 kept, conv3 rejected, conv2 kept -> 4 tries for a budget of 2
    # (the old total, 6 + 2, was passed by 6 + 4 advances); conv1 and conv0 are never tried.
    counter, floated = run_counted(nodes, [False, True, False, True], budget=2)
    assert floated == ["conv4", "conv2"]
    assert counter.stages == [["float layers: each alone", 6, 6], ["float layers: added in turn", 6, 6]]


def test_no_stage_when_there_is_nothing_to_search() -> None:
    counter, floated = run_counted(["conv0", "conv1"], [], budget=0)
    assert floated == [] and counter.stages == []


def test_search_with_no_helpful_layer_ends_its_stage_at_zero() -> None:
    nodes = ["conv0", "conv1"]
    counter = Counter()

    class Useless(ScriptedJudge):
        def score(self, scales: Mapping[str, float], gates: Mapping[str, float]) -> Score:
            return Score(1.0, 0.5)

    choose_float_layers(Useless(nodes, []), {}, nodes, 2, None, counter.stage, counter.advance)  # type: ignore[arg-type]
    assert counter.stages == [["float layers: each alone", 2, 2], ["float layers: added in turn", 0, 0]]
