"""tune's time limit: when its searches stop trying candidates.

The steps before the searches (the calibration pass, the layer statistics, the single algorithms,
the weights) run whole; the threshold search and the float-layer step try their candidates most
promising first and stop at the deadline, so a time limit costs the least useful candidates. What
was tried is recorded (tune.json), and no limit gives the whole search.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    at: float | None
    """A ``time.perf_counter()`` value; None: no limit."""

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(None if seconds is None else time.perf_counter() + seconds)

    def passed(self) -> bool:
        return self.at is not None and time.perf_counter() >= self.at

    def left(self) -> float:
        return math.inf if self.at is None else max(0.0, self.at - time.perf_counter())

    def share(self, fraction: float) -> Deadline:
        """A deadline ``fraction`` of the way from now to this one (the rest for later steps)."""
        return self if self.at is None else Deadline.after(fraction * self.left())


NO_LIMIT = Deadline(None)
