"""Load a config file: YAML -> schema validation -> cross-field checks, each error with file, line and key."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError

from trtq.config.schema import InputSpec, TrtqConfig
from trtq.config.yaml_source import KeyPath, YamlDocument, load_yaml
from trtq.errors import TrtqError
from trtq.resources import resolve_path


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config plus where it came from; paths in it are relative to the YAML file."""

    source: Path
    spec: TrtqConfig
    document: YamlDocument | None = field(default=None, compare=False, repr=False)
    """The parsed YAML, for the line of a key a command needs and the config left out."""

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def resolve(self, entry: str) -> Path:
        return resolve_path(entry, self.base_dir)

    def default_output(self, suffix: str) -> Path:
        """Where a command writes when no path is given: out/ beside the config, named after it."""
        return self.base_dir / "out" / f"{self.source.stem}.{suffix}"

    @property
    def model_path(self) -> Path:
        return self.resolve(self.spec.model.path)

    @property
    def images_path(self) -> Path:
        images = self.spec.calibration.images
        if images is None:
            self._required("images", "reads the calibration images")
        return self.resolve(images)

    @property
    def cache_path(self) -> Path:
        cache = self.spec.calibration.cache
        if cache is None:
            self._required(
                "cache", "reads or writes the config's cache; qdq, compare and sensitivity take --cache"
            )
        return self.resolve(cache)

    def _required(self, key: str, because: str) -> NoReturn:
        """The schema leaves calibration.images and .cache optional (`trtq qdq --cache` needs neither);
        a command that needs one names it, where it belongs in the file."""
        where = self.where(("calibration", key))
        raise TrtqError(f"{where}: calibration.{key}: required key is missing (this command {because})")

    def where(self, key_path: KeyPath) -> str:
        """``file:line`` of a key (of its nearest section when the key is not written), for messages."""
        document = self.document if self.document is not None else load_yaml(self.source)
        line = document.line_of(key_path)
        return f"{self.source}:{line}" if line else str(self.source)

    @property
    def image_input(self) -> InputSpec:
        return self.spec.inputs[0]

    @property
    def calibration_shape(self) -> tuple[int, ...]:
        """The image input's shape as calibration feeds it: the opt shape, with its batch dim set by
        ``calibration.batch_size`` when given (TensorRT's calibration profile takes that shape)."""
        shape = self.image_input.opt_shape
        batch = self.spec.calibration.batch_size
        return shape if batch is None else (batch, *shape[1:])

    @property
    def batch_size(self) -> int:
        return self.calibration_shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of one preprocessed image."""
        shape = self.calibration_shape
        return (shape[2], shape[3]) if self.spec.preprocess.layout == "nchw" else (shape[1], shape[2])


def engine_path(config: LoadedConfig) -> Path:
    """Where ``trtq build`` writes the engine: build.engine, else CONFIG_NAME.PRECISION.engine beside
    the config. A config fact (no TensorRT), so the build's outputs are checked before TensorRT loads."""
    build = config.spec.build
    if build.engine:
        return config.resolve(build.engine)
    return config.base_dir / f"{config.source.stem}.{build.precision}.engine"


def build_report_path(engine: Path) -> Path:
    """The JSON build report written beside an engine."""
    return engine.with_name(engine.name + ".build.json")


def load_config(path: Path | str) -> LoadedConfig:
    path = Path(path)
    document = load_yaml(path)
    if not isinstance(document.data, dict):
        raise TrtqError(
            f"{path}: a config must be a YAML mapping with sections model, inputs, calibration, ..."
        )
    try:
        spec = TrtqConfig.model_validate(document.data)
    except ValidationError as exc:
        raise TrtqError(_format_validation_error(document, exc)) from None
    problems = _cross_field_problems(spec)
    if problems:
        raise TrtqError(_format_problems(document, problems))
    return LoadedConfig(source=path, spec=spec, document=document)


def config_error(config: LoadedConfig, key_path: KeyPath, message: str) -> TrtqError:
    """An error about one key of a loaded config, located by file and line like a schema error
    (for checks that need the model, made after loading)."""
    return TrtqError(f"{config.where(key_path)}: {_dotted(key_path)}: {message}")


def _cross_field_problems(spec: TrtqConfig) -> list[tuple[KeyPath, str]]:
    """Rules that span sections: what the image pipeline needs from the input shape."""
    problems: list[tuple[KeyPath, str]] = []
    if len(spec.inputs) != 1:
        problems.append(
            (("inputs",), f"calibration feeds images to one input; {len(spec.inputs)} are listed")
        )
        return problems
    image_input = spec.inputs[0]
    pre = spec.preprocess
    shape_key: KeyPath = ("inputs", 0, "shape" if image_input.shape is not None else "opt")
    shape = image_input.opt_shape
    if len(shape) != 4:
        problems.append(
            (shape_key, f"an image input needs rank 4 (N, C, H, W or N, H, W, C), got {list(shape)}")
        )
        return problems
    channels = shape[1] if pre.layout == "nchw" else shape[3]
    if channels != pre.channels:
        problems.append(
            (
                shape_key,
                f"{channels} channels in {pre.layout} layout, but preprocess.color '{pre.color}' "
                f"gives {pre.channels}",
            )
        )
    for key in ("mean", "std"):
        values = getattr(pre, key)
        if len(values) not in (1, pre.channels):
            problems.append((("preprocess", key), f"needs 1 or {pre.channels} values, got {len(values)}"))
    batch = spec.calibration.batch_size
    low, high = image_input.batch_range()
    if batch is not None and not low <= batch <= high:
        accepted = f"its fixed batch dim {low}" if low == high else f"batch sizes {low}..{high}"
        problems.append(
            (
                ("calibration", "batch_size"),
                f"{batch}: the input takes {accepted} ({_dotted(shape_key)}); a dynamic batch dim "
                "(min/opt/max) lets calibration.batch_size choose the calibration batch",
            )
        )
    height, width = (shape[2], shape[3]) if pre.layout == "nchw" else (shape[1], shape[2])
    if pre.resize == "short_side_crop" and pre.short_side is not None and pre.short_side < max(height, width):
        problems.append(
            (("preprocess", "short_side"), f"{pre.short_side} is smaller than the {height}x{width} crop")
        )
    return problems


def _format_problems(document: YamlDocument, problems: Sequence[tuple[KeyPath, str]]) -> str:
    lines = []
    for key_path, message in problems:
        line = document.line_of(key_path)
        where = f"{document.path}:{line}" if line else str(document.path)
        lines.append(f"{where}: {_dotted(key_path)}: {message}")
    return "\n".join(lines)


def _format_validation_error(document: YamlDocument, exc: ValidationError) -> str:
    problems: list[tuple[KeyPath, str]] = []
    for error in exc.errors():
        loc: KeyPath = tuple(part for part in error["loc"] if isinstance(part, str | int))
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            valid = _field_names_at(loc[:-1])
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(valid)})"
            problems.append((loc, f"unknown key{hint}"))
        elif error["type"] == "missing":
            problems.append((loc, "required key is missing"))
        else:
            shown = f"{error['input']!r}: " if not isinstance(error["input"], dict | list) else ""
            problems.append((loc, f"{shown}{_message(error['msg'])}"))
    return _format_problems(document, problems)


def _message(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _dotted(key_path: KeyPath) -> str:
    return ".".join(str(part) for part in key_path) or "(top level)"


def _field_names_at(loc: KeyPath) -> list[str]:
    """Valid keys of the schema section at ``loc`` (list indices and mapping keys such as an output's
    name skipped), for 'did you mean' hints."""
    annotation: Any = TrtqConfig
    for part in loc:
        if typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
            continue
        if isinstance(part, int):
            continue
        model = _model_in(annotation)
        field = None if model is None else model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
    model = _model_in(annotation)
    return [] if model is None else list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
