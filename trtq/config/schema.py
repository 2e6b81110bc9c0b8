"""The YAML config's schema: one section per concern, unknown keys rejected, per-section rules checked."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from trtq.numeric import FLOAT32_MAX, FLOAT32_TINY
from trtq.trt_versions import encode_version

Shape = list[PositiveInt]
NonEmpty = Annotated[str, Field(min_length=1)]
Algorithm = Literal["entropy", "minmax", "percentile", "mse"]
ALGORITHMS: tuple[Algorithm, ...] = ("entropy", "minmax", "percentile", "mse")
AlgorithmChoice = Literal["entropy", "minmax", "percentile", "mse", "auto"]
"""What calibration.algorithm may say: one algorithm, or auto (the best on held-out images)."""
OutputKind = Literal["raw", "ctc", "yolo", "classes", "map"]


class Section(BaseModel):
    # strict: YAML's `true` is not the integer 1 (nor "8" the number 8); no value may be nan or inf.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ModelSection(Section):
    path: str = Field(
        min_length=1, description="ONNX file, relative to the YAML file, or pkg:<package>/<file>"
    )


class InputSpec(Section):
    """A network input: either a fixed ``shape`` or a ``min``/``opt``/``max`` profile for dynamic dims."""

    name: str
    shape: Shape | None = None
    min: Shape | None = None
    opt: Shape | None = None
    max: Shape | None = None

    @model_validator(mode="after")
    def _shape_or_profile(self) -> InputSpec:
        profile = (self.min, self.opt, self.max)
        if self.shape is not None:
            if any(p is not None for p in profile):
                raise ValueError("give either 'shape' or 'min'/'opt'/'max', not both")
            return self
        if any(p is None for p in profile):
            raise ValueError("give 'shape', or all three of 'min', 'opt' and 'max'")
        lo, mid, hi = (list(p or []) for p in profile)
        if not len(lo) == len(mid) == len(hi):
            raise ValueError(f"'min', 'opt' and 'max' must have the same rank, got {lo}, {mid}, {hi}")
        if any(not a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
            raise ValueError(f"need min <= opt <= max in every dimension, got {lo}, {mid}, {hi}")
        return self

    @property
    def opt_shape(self) -> tuple[int, ...]:
        """The fixed shape, or the profile's opt: what TensorRT tunes for and bench times."""
        shape = self.shape if self.shape is not None else self.opt
        assert shape is not None
        return tuple(shape)

    def batch_range(self) -> tuple[int, int]:
        """The batch sizes this input accepts: the fixed one, or the profile's min..max."""
        if self.shape is not None:
            return self.shape[0], self.shape[0]
        assert self.min is not None and self.max is not None
        return self.min[0], self.max[0]


Resize = Literal["stretch", "letterbox", "short_side_crop", "fixed_height"]
PADDING_RESIZES = ("letterbox", "fixed_height")
DEFAULT_PAD_VALUE = 114.0
"""Letterbox grey (YOLO's), in pixel units."""


class PreprocessSection(Section):
    color: Literal["rgb", "bgr", "gray"] = "rgb"
    resize: Resize = Field(
        default="stretch",
        description="fixed_height: height to the input's, width by the aspect ratio rounded up (at most "
        "the input's, squeezed beyond), image at the left, the rest padded (PP-OCR text recognizers)",
    )
    short_side: PositiveInt | None = Field(
        default=None, description="short_side_crop: resize the short side to this, then center-crop"
    )
    pad_value: float | None = Field(
        default=None,
        ge=0,
        le=255,
        description="letterbox/fixed_height border in pixel units (0-255, before scale/mean/std); "
        f"{DEFAULT_PAD_VALUE:g} when neither this nor pad_normalized is given",
    )
    pad_normalized: float | None = Field(
        default=None,
        description="the border given after scale/mean/std instead, for every channel (PP-OCR: 0)",
    )
    interpolation: Literal["nearest", "linear", "cubic", "area", "lanczos"] = "linear"
    scale: float = Field(default=1.0 / 255.0, gt=0)
    mean: list[float] = Field(default_factory=lambda: [0.0])
    std: list[float] = Field(default_factory=lambda: [1.0])
    layout: Literal["nchw", "nhwc"] = "nchw"

    @model_validator(mode="after")
    def _short_side_needs_its_resize(self) -> PreprocessSection:
        if self.short_side is not None and self.resize != "short_side_crop":
            raise ValueError(f"short_side only applies to resize: short_side_crop (resize is {self.resize})")
        return self

    @model_validator(mode="after")
    def _one_padding(self) -> PreprocessSection:
        """The border is given once, in the units the user thinks in: pixels before normalising
        (YOLO's grey 114) or values after it (PP-OCR's 0 after (x/255-0.5)/0.5). Checked on values,
        not on which keys were written, so a dumped config (tune's overlay) loads again."""
        if self.pad_value is not None and self.pad_normalized is not None:
            raise ValueError(
                "give pad_value (pixel units 0-255, before scale/mean/std) or pad_normalized (after "
                "them), not both"
            )
        if self.pad_normalized is not None and self.resize not in PADDING_RESIZES:
            raise ValueError(
                f"pad_normalized only applies to resize: letterbox or fixed_height (resize is {self.resize})"
            )
        if self.resize == "fixed_height" and self.pad_value is None and self.pad_normalized is None:
            raise ValueError(
                "resize: fixed_height needs its border: pad_value (pixel units 0-255) or pad_normalized "
                "(after scale/mean/std; PP-OCR recognizers pad with pad_normalized: 0)"
            )
        return self

    @property
    def pixel_pad(self) -> float | None:
        """The border in pixel units, or None when it is given after normalising (pad_normalized)."""
        if self.pad_normalized is not None:
            return None
        return DEFAULT_PAD_VALUE if self.pad_value is None else self.pad_value

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, std: list[float]) -> list[float]:
        if any(s == 0 for s in std):
            raise ValueError("std values must be non-zero")
        return std

    @field_validator("scale", "mean", "std", "pad_normalized")
    @classmethod
    def _float32_values(cls, value: float | list[float] | None) -> float | list[float] | None:
        """Preprocessing runs in float32: a value that overflows it, or (scale, std) rounds to 0 in
        it, would make every input inf or NaN further on, far from the key that caused it."""
        for v in value if isinstance(value, list) else [] if value is None else [value]:
            if not math.isfinite(v) or abs(v) > FLOAT32_MAX:
                raise ValueError("outside float32's range (about 3.4e38)")
            if v != 0 and abs(v) < FLOAT32_TINY:
                raise ValueError(f"{v} is too small for float32 (below about 1.2e-38), where it is 0")
        return value

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3


class CalibrationSection(Section):
    # Optional here, required by the commands that read them (LoadedConfig.images_path, cache_path):
    # `trtq qdq --cache C` needs neither.
    images: NonEmpty | None = Field(
        default=None, description="text file with one image path per line, or a directory"
    )
    cache: NonEmpty | None = Field(
        default=None, description="calibration cache to write (a manifest is written beside it)"
    )
    batch_size: PositiveInt | None = Field(
        default=None,
        description="the calibration batch: fills a dynamic batch dim (min..max); default the opt shape's",
    )
    max_images: PositiveInt | None = None
    algorithm: AlgorithmChoice = "entropy"
    holdout: float = Field(
        default=0.25,
        ge=0,
        lt=1,
        description="share of the list (its last whole batches) on which every algorithm's INT8 model, "
        "calibrated on the batches before, is scored against FP32; 0: no scoring (docs/accuracy.md)",
    )
    eval_images: str | None = Field(
        default=None,
        min_length=1,
        description="score the algorithms on these images instead of holding back part of the list",
    )
    percentile: float = Field(default=99.99, gt=0, le=100)
    last_batch: Literal["drop", "wrap"] = Field(
        default="drop", description="drop a partial last batch, or fill it from the start of the list"
    )
    on_bad_image: Literal["error", "skip"] = "error"
    # 10.16.1: the newest TensorRT 10 release on PyPI (tensorrt-cu12 10.16.1.11); NVIDIA's source tag
    # v10.16 says 10.16.0.72 and has no 10.16.1 tag. Only the header's version number depends on it,
    # and `trtq build` rewrites that for the running TensorRT (`trtq doctor` shows both).
    trt_version: str = Field(
        default="10.16.1",
        description="TensorRT version the cache header targets (default: the newest TensorRT 10 on PyPI)",
    )
    cache_header: Literal["auto", "EntropyCalibration2", "MinMaxCalibration"] = Field(
        default="auto",
        description="algorithm named in the cache header; auto: MinMaxCalibration for minmax, else "
        "EntropyCalibration2 (the calibrator trtexec --calib uses)",
    )
    workers: PositiveInt = Field(default=2, description="image decoding threads")
    input_range: Literal["preprocessing", "histogram"] = Field(
        default="preprocessing",
        description="the model input's threshold: the range the preprocessing gives (pixels 0..255 "
        "after scale, mean and std), or the algorithm's pick from its histogram (what TensorRT does)",
    )

    @field_validator("trt_version")
    @classmethod
    def _version_format(cls, version: str) -> str:
        """Only what a cache header can carry and give back: trtq never writes a cache it cannot read."""
        encode_version(version)  # ValueError: "'8.10.0': before TensorRT 10 the minor must be 0..9 (...)"
        return version


_KIND_KEYS: dict[str, frozenset[str]] = {
    "raw": frozenset(),
    "ctc": frozenset({"blank"}),
    "yolo": frozenset({"conf", "iou"}),
    "classes": frozenset(),
    "map": frozenset({"threshold"}),
}


class OutputSpec(Section):
    """How one model output is judged against FP32 (trtq/compare/tasks.py): one model with every
    kind's keys, so an error is located at the output's own key; keys of another kind are refused."""

    kind: OutputKind = "raw"
    blank: NonNegativeInt = Field(default=0, description="ctc: index of the blank class")
    conf: float = Field(default=0.25, ge=0, le=1, description="yolo: least class score of a detection")
    iou: float = Field(default=0.45, gt=0, le=1, description="yolo: NMS overlap that suppresses a box")
    threshold: float = Field(default=0.3, description="map: value above which a pixel is in the mask")

    @model_validator(mode="after")
    def _keys_of_kind(self) -> OutputSpec:
        foreign = sorted(self.model_fields_set - {"kind"} - _KIND_KEYS[self.kind])
        if foreign:
            own = ", ".join(sorted(_KIND_KEYS[self.kind])) or "none"
            raise ValueError(f"{', '.join(foreign)} does not apply to kind {self.kind} (its keys: {own})")
        return self

    @model_serializer(mode="wrap")
    def _dump_own_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dumped with its kind's keys only, so a dumped config (trtq tune's) validates again."""
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if key == "kind" or key in _KIND_KEYS[self.kind]}


class BuildSection(Section):
    """Engine build settings (consumed by ``trtq build``)."""

    precision: Literal["fp32", "fp16", "int8", "int8-qdq"] = "int8"
    engine: str | None = None
    workspace_mib: PositiveInt | None = None
    optimization_level: int = Field(default=3, ge=0, le=5)
    timing_cache: str | None = None
    layer_precisions: dict[str, Literal["fp32", "fp16", "int8"]] = Field(default_factory=dict)


class QdqSection(Section):
    """Explicit quantization (``trtq qdq``): which layers stay in float."""

    exclude: list[str] = Field(default_factory=list, description="node name patterns (fnmatch) kept in float")


class BenchmarkSection(Section):
    """Timing settings (consumed by ``trtq bench``); defaults are trtexec's."""

    backend: Literal["tensorrt", "onnxruntime"] = "tensorrt"
    warmup_ms: float = Field(default=200.0, ge=0)
    duration_s: float = Field(default=3.0, gt=0)
    iterations: PositiveInt = 10
    percentiles: list[float] = Field(default_factory=lambda: [90.0, 95.0, 99.0])
    cuda_graph: bool = False
    spin_wait: bool = False

    @field_validator("percentiles")
    @classmethod
    def _in_range(cls, values: list[float]) -> list[float]:
        if any(not 0 <= v <= 100 for v in values):
            raise ValueError("percentiles must lie in [0, 100]")
        return values


class TrtqConfig(Section):
    model: ModelSection
    inputs: list[InputSpec] = Field(min_length=1)
    preprocess: PreprocessSection = Field(default_factory=PreprocessSection)
    calibration: CalibrationSection = Field(default_factory=CalibrationSection)
    build: BuildSection = Field(default_factory=BuildSection)
    qdq: QdqSection = Field(default_factory=QdqSection)
    benchmark: BenchmarkSection = Field(default_factory=BenchmarkSection)
    outputs: dict[str, OutputSpec] = Field(
        default_factory=dict, description="per output name: how INT8 is judged (default kind raw)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrtqConfig:
        names = [spec.name for spec in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"inputs: duplicate input names in {names}")
        return self
