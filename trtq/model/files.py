"""An ONNX model on disk: loading it (with its external data), and the files it is made of (the model
and the external-data files its initializers point to)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from trtq.errors import TrtqError
from trtq.model.index import subgraphs
from trtq.model.prepare import prepared


def load_onnx(path: Path) -> onnx.ModelProto:
    """The float model with its external data, prepared as every command sees it (nodes named,
    constant-condition Ifs folded: trtq/model/prepare.py); a TrtqError naming the file when it is
    missing, unreadable, empty or quantized already."""
    if not path.is_file():
        raise TrtqError(f"{path}: ONNX model not found")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a bad file
        raise TrtqError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    return prepared(model, path)


def external_data_files(model_path: Path) -> list[Path]:
    """External-data files of ``model_path``, sorted and unique; empty when it has none or is unreadable
    (whoever loads the model reports that, with its own message)."""
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # onnx raises DecodeError, ValueError, OSError, ... for a bad or missing file
        return []
    base = model_path.parent
    locations = {
        ExternalDataInfo(tensor).location for tensor in _tensors(model.graph) if uses_external_data(tensor)
    }
    return sorted(Path(os.path.normpath(base / location)) for location in locations if location)


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Initializers and tensor attributes, subgraphs (If, Loop) included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
        for subgraph in subgraphs(node):
            yield from _tensors(subgraph)
