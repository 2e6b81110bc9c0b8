"""Checks and their results, apart from the checks themselves (which import the CPU stack)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["pass", "fail", "skip"]


class CheckFailed(Exception):
    """A check saw something that should not happen; the message says what."""


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Any], str]
    """Given the TinyWorkspace; returns what it saw."""
    needs: tuple[str, ...] = ()
    skip: str | None = None
    """Why this TensorRT cannot do it (the check is reported as skipped, not failed)."""


@dataclass(frozen=True)
class Result:
    name: str
    status: Status
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail}


def run_checks(ws: Any, checks: list[Check]) -> list[Result]:
    """Each check in turn; an error is that check's failure, and skips the checks that need it."""
    results: list[Result] = []
    failed: set[str] = set()
    for check in checks:
        if check.skip is not None:
            results.append(Result(check.name, "skip", check.skip))
            failed.add(check.name)
            continue
        missing = [need for need in check.needs if need in failed]
        if missing:
            results.append(Result(check.name, "skip", f"needs '{missing[0]}', which did not pass"))
            failed.add(check.name)
            continue
        try:
            results.append(Result(check.name, "pass", check.run(ws)))
        except Exception as exc:  # every failure is reported, and the other checks still run
            failed.add(check.name)
            results.append(Result(check.name, "fail", f"{type(exc).__name__}: {exc}"))
    return results
