"""Every repository path docs/*.md names exists: a module moved or renamed takes its mentions along."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted((REPO / "docs").glob("*.md"))
PATH = re.compile(r"\b(?:trtq|benchmarks|tests|configs|calibrators|docker)/[\w./-]*\w")


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_named_paths_exist(doc: Path) -> None:
    named = sorted(set(PATH.findall(doc.read_text(encoding="utf-8"))))
    missing = [path for path in named if not (REPO / path).exists()]
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"
