"""tune's time limit: the threshold search screens every tensor once, then spends what is left on the
tensors whose choice moved the output most; both searches stop at the deadline, say so, and keep
their progress counts whole. The judge is a stand-in whose output error is written out by hand."""

from __future__ import annotations

import math
from collections.abc import Mapping

from trtq.tune.deadline import Deadline
from trtq.tune.judge import Measured, Verdict
from trtq.tune.mixed import choose_float_layers
from trtq.tune.search_model import Score
from trtq.tune.thresholds import search_runs, search_thresholds

WEIGHTS = {"a": 1.0, "b": 8.0, "c": 0.1, "d": 4.0}
"""How much each tensor's threshold matters; the best scale of every tensor is 2.0."""
CANDIDATES = {t: {"minmax": 4.0, "entropy": 1.0, "percentile 99.9": 2.0} for t in WEIGHTS}


def error(scales: Mapping[str, float]) -> float:
    return sum(w * math.log(scales[t] / 2.0) ** 2 for t, w in WEIGHTS.items()) + 0.01


class Recorded:
    """Judges by ``error``; records which tensor each challenge changed."""

    def __init__(self) -> None:
        self.search = self
        self.validation = None
        self.challenged: list[str] = []
        self.current: dict[str, float] = {}

    def score(self, scales: Mapping[str, float], _gates: Mapping[str, float]) -> Score:
        return Score(error(scales), 0.9)

    def measure(self, scales: Mapping[str, float], gates: Mapping[str, float]) -> Measured:
        self.current = dict(scales)
        return Measured(self.score(scales, gates), None)

    def challenge(
        self,
        scales: Mapping[str, float],
        gates: Mapping[str, float],
        best: Measured,
        stop_early: bool = False,
    ) -> Verdict:
        changed = [t for t in scales if scales[t] != self.current[t]]
        self.challenged += changed
        trial = Measured(self.score(scales, gates), None)
        kept = trial.search.improves_on(best.search)
        if kept:
            self.current = dict(scales)
        return Verdict(trial, kept)


class After:
    """A deadline that passes after ``runs`` questions (the search asks once per candidate run)."""

    def __init__(self, runs: int) -> None:
        self.runs = runs

    def passed(self) -> bool:
        self.runs -= 1
        return self.runs < 0


START = dict.fromkeys(WEIGHTS, 0.5)


def test_screen_once_each_in_graph_order_then_the_tensors_that_moved_most() -> None:
    judge = Recorded()
    search = search_thresholds(judge, START, "entropy", CANDIDATES, {})  # type: ignore[arg-type]
    # The screen tries each tensor's farthest candidate (4.0, twice as far from 0.5 as 2.0 by ratio)
    # in graph order; the other two candidates follow for the tensors the screen moved most: b (8),
    # d (4), a (1), c (0.1).
    assert judge.challenged == ["a", "b", "c", "d", "b", "b", "d", "d", "a", "a", "c", "c"]
    assert search.scales == dict.fromkeys(WEIGHTS, 2.0) and not search.stopped_by_deadline
    assert search.score.error == error(search.scales)


def test_a_time_limit_leaves_out_the_tensors_that_matter_least() -> None:
    judge, progress = Recorded(), []
    search = search_thresholds(
        judge,  # type: ignore[arg-type]
        START,
        "entropy",
        CANDIDATES,
        {},
        progress=lambda: progress.append(1),
        deadline=After(6),  # type: ignore[arg-type]
    )
    assert judge.challenged == ["a", "b", "c", "d", "b", "b"]
    assert search.stopped_by_deadline and search.tried == 6
    assert search.scales == {"a": 4.0, "b": 2.0, "c": 4.0, "d": 4.0}
    assert len(progress) == search_runs(CANDIDATES, 1)  # the bar ends full


def test_a_passed_deadline_tries_nothing_and_says_so() -> None:
    judge = Recorded()
    search = search_thresholds(judge, START, "entropy", CANDIDATES, {}, deadline=Deadline(0.0))  # type: ignore[arg-type]
    assert judge.challenged == [] and search.tried == 0 and search.stopped_by_deadline
    assert search.scales == START


def test_float_layers_stop_at_the_deadline_with_their_stages_whole() -> None:
    class Layers(Recorded):
        def score(self, scales: Mapping[str, float], gates: Mapping[str, float]) -> Score:
            return Score(1.0 - 0.1 * sum(1 for g in gates.values() if g == 0.0), 0.9)

    stages: list[list[object]] = []

    def stage(name: str, units: int) -> None:
        stages.append([name, units, 0])

    def advance() -> None:
        stages[-1][2] += 1  # type: ignore[operator]

    nodes = ["conv0", "conv1", "conv2", "conv3"]
    result = choose_float_layers(Layers(), {}, nodes, 4, None, stage, advance, After(2))  # type: ignore[arg-type]
    assert result.stopped_by_deadline
    assert [node for node, _ in result.ranking] == ["conv0", "conv1"]  # measured alone before the limit
    assert result.float_nodes == []  # no time was left to add one
    assert [(name, units) for name, units, advances in stages if units != advances] == []
