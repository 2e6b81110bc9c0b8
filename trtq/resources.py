"""``pkg:`` paths: files shipped inside an installed Python package, found without importing it.

Configs and image lists use them to point at real models and photos that registry packages carry
(``pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx``), so no path depends on where the
package was installed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from trtq.errors import TrtqError

PKG_PREFIX = "pkg:"


def resolve_path(entry: str, base_dir: Path) -> Path:
    """A config or list entry as a path: ``pkg:`` via the package, others relative to ``base_dir``."""
    if entry.startswith(PKG_PREFIX):
        return _package_file(entry)
    path = Path(entry).expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(base_dir / path))


def _package_file(entry: str) -> Path:
    package, _, inner = entry[len(PKG_PREFIX) :].partition("/")
    if not package or not inner:
        raise TrtqError(f"'{entry}': a package path has the form pkg:<package>/<file inside it>")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TrtqError(
            f"'{entry}': Python package '{package}' is not installed "
            f"(pip install '.[demo]' installs those the bundled configs use, but configs/yolov8n.yaml's "
            f"nudenet: pip install --no-deps nudenet)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / inner
