"""Images two lists share: what is chosen or calibrated on one set must be scored on another."""

from __future__ import annotations

from collections.abc import Sequence

from trtq.data.image_list import ImageEntry
from trtq.fileio import sha256_file


def overlap(tuning: Sequence[ImageEntry], evaluation: Sequence[ImageEntry]) -> list[str]:
    """Evaluation images that are tuning images too: the same file, or the same bytes under another name."""
    paths = {entry.path.resolve() for entry in tuning}
    hashes = {sha256_file(entry.path): entry.path for entry in tuning if entry.path.is_file()}
    shared = []
    for entry in evaluation:
        if entry.path.resolve() in paths:
            shared.append(f"{entry.where} (same file)")
        elif entry.path.is_file() and (twin := hashes.get(sha256_file(entry.path))) is not None:
            shared.append(f"{entry.where} (same content as '{twin}')")
    return shared
