"""The config's ``outputs:`` section checked against the model's real outputs, once they are known."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trtq.compare.outputs import Array
from trtq.compare.tasks import shape_problem, suggested_kind
from trtq.config.loader import LoadedConfig, config_error
from trtq.config.schema import OutputSpec
from trtq.model.files import load_onnx


def declared_outputs(config: LoadedConfig, reference: Mapping[str, Array]) -> dict[str, OutputSpec]:
    """The declared kinds, refused (file, line, key) when an output is not the model's or its shape
    does not fit the kind; ``reference``: FP32's outputs."""
    _check(config, {name: list(value.shape) for name, value in reference.items()})
    return dict(config.spec.outputs)


def check_declared_names(config: LoadedConfig) -> None:
    """The declared outputs checked against the model's graph before any image is run: a typo or a
    kind that cannot fit a static output shape is refused at its key, not after a calibration pass."""
    graph = load_onnx(config.model_path).graph
    dims = {out.name: out.type.tensor_type.shape.dim for out in graph.output}
    _check(
        config,
        {name: [d.dim_value if d.HasField("dim_value") else None for d in dim] for name, dim in dims.items()},
    )


def _check(config: LoadedConfig, shapes: Mapping[str, Sequence[int | None]]) -> None:
    """Each declared output against the model's outputs by name and shape (None: a dimension not
    known; a kind is checked against a shape only when all of it is known)."""
    for name, spec in config.spec.outputs.items():
        if name not in shapes:
            raise config_error(
                config,
                ("outputs", name),
                f"'{name}' is not an output of {config.model_path.name}; its outputs are {list(shapes)}",
            )
        shape = shapes[name]
        problem = None if None in shape else shape_problem(spec.kind, [d for d in shape if d is not None])
        if problem is not None:
            raise config_error(config, ("outputs", name, "kind"), problem)


def undeclared_notes(config: LoadedConfig, reference: Mapping[str, Array]) -> list[str]:
    """Which task metric would apply to outputs with no declared kind that clearly have a class axis."""
    notes = (
        suggested_kind(name, value) for name, value in reference.items() if name not in config.spec.outputs
    )
    return [note for note in notes if note is not None]
