"""The config's ``outputs:`` section checked against the model's real outputs, once they are known."""

from __future__ import annotations

from collections.abc import Mapping

from trtq.compare.outputs import Array
from trtq.compare.tasks import shape_problem, suggested_kind
from trtq.config.loader import LoadedConfig, config_error
from trtq.config.schema import OutputSpec
from trtq.model.files import load_onnx


def declared_outputs(config: LoadedConfig, reference: Mapping[str, Array]) -> dict[str, OutputSpec]:
    """The declared kinds, refused (file, line, key) when an output is not the model's or its shape
    does not fit the kind; ``reference``: FP32's outputs."""
    specs = config.spec.outputs
    for name, spec in specs.items():
        if name not in reference:
            raise config_error(
                config,
                ("outputs", name),
                f"'{name}' is not an output of {config.model_path.name}; its outputs are {list(reference)}",
            )
        problem = shape_problem(spec.kind, reference[name].shape)
        if problem is not None:
            raise config_error(config, ("outputs", name, "kind"), problem)
    return dict(specs)


def check_declared_names(config: LoadedConfig) -> None:
    """The declared outputs checked against the model's graph before any image is run: a typo or a
    kind that cannot fit a static output shape is refused at its key, not after a calibration pass."""
    graph = load_onnx(config.model_path).graph
    shapes = {
        out.name: [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
        for out in graph.output
    }
    for name, spec in config.spec.outputs.items():
        if name not in shapes:
            raise config_error(
                config,
                ("outputs", name),
                f"'{name}' is not an output of {config.model_path.name}; its outputs are {list(shapes)}",
            )
        known = [d for d in shapes[name] if d is not None]
        problem = shape_problem(spec.kind, known) if len(known) == len(shapes[name]) else None
        if problem is not None:
            raise config_error(config, ("outputs", name, "kind"), problem)


def undeclared_notes(config: LoadedConfig, reference: Mapping[str, Array]) -> list[str]:
    """Which task metric would apply to outputs with no declared kind that clearly have a class axis."""
    notes = (
        suggested_kind(name, value) for name, value in reference.items() if name not in config.spec.outputs
    )
    return [note for note in notes if note is not None]
