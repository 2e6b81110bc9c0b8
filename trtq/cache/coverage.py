"""Is this cache for this model? A cache from another model shares no tensor names with it (or few)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from trtq.errors import TrtqError
from trtq.text import first_few

MIN_SHARE = 0.5
"""Below this share of the needed tensors, a cache is taken as another model's, not as incomplete."""


def missing_tensors(cache_path: Path, scales: Mapping[str, float], needed: Collection[str]) -> list[str]:
    """The needed tensors the cache has no scale for; an error when it covers less than MIN_SHARE."""
    missing = [name for name in needed if name not in scales]
    if not needed:
        return missing
    covered = len(needed) - len(missing)
    if covered == 0 or covered / len(needed) < MIN_SHARE:
        shown = first_few(missing)
        raise TrtqError(
            f"{cache_path}: has scales for {covered} of the model's {len(needed)} activations "
            f"(missing: {shown}); is it the cache of another model?"
        )
    return missing


def describe_missing(cache_path: Path, missing: list[str]) -> str:
    shown = first_few(missing, 8)
    return f"{cache_path} has no scale for {len(missing)} of the model's activations: {shown}"
