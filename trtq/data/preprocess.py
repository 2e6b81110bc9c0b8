"""Decoded image -> one float32 network input, as the config's preprocess section says."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from trtq.config.schema import PreprocessSection
from trtq.data.image_list import ImageEntry
from trtq.data.listed_file import BadImageError, read_listed_file

FloatArray = npt.NDArray[np.float32]
_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


def decode_image(entry: ImageEntry, gray: bool) -> npt.NDArray[np.uint8]:
    """Decode to uint8 HxWx3 BGR (or HxW gray); every failure is a BadImageError naming the entry."""
    data = np.frombuffer(read_listed_file(entry, "image"), dtype=np.uint8)
    flags = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(_without_png_color_profile(data), flags) if data.size else None
    except cv2.error as exc:
        raise BadImageError(entry, _opencv_refusal(exc)) from None
    if image is None:
        raise BadImageError(entry, "cannot decode image (empty, corrupt or not an image format OpenCV reads)")
    return np.asarray(image, dtype=np.uint8)


def _opencv_refusal(exc: cv2.error) -> str:
    """OpenCV raises (rather than returning None) for a header it will not allocate for."""
    if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
        return (
            "cannot decode image: its header claims more pixels than OpenCV decodes "
            "(CV_IO_MAX_IMAGE_PIXELS, 2^30 by default)"
        )
    detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return f"cannot decode image: OpenCV: {detail}"


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _without_png_color_profile(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A PNG without its iCCP chunk; any other data unchanged.

    OpenCV ignores colour profiles, but libpng prints a warning to stderr for a malformed one on
    every decode (scikit-image's page.png has one). iCCP is an ancillary chunk, so dropping it
    leaves the decoded pixels as they were.
    """
    raw = data.tobytes()
    if not raw.startswith(_PNG_SIGNATURE):
        return data
    chunks, position = [raw[:8]], 8
    while position + 8 <= len(raw):
        length = int.from_bytes(raw[position : position + 4], "big")
        end = position + 12 + length
        if raw[position + 4 : position + 8] != b"iCCP":
            chunks.append(raw[position:end])
        position = end
    chunks.append(raw[position:])
    return np.frombuffer(b"".join(chunks), dtype=np.uint8)


@dataclass(frozen=True)
class Preprocessor:
    """Resize, colour order, scale/mean/std and layout; output matches one item of the network input."""

    spec: PreprocessSection
    height: int
    width: int

    @property
    def item_shape(self) -> tuple[int, int, int]:
        """One item of the network input: (C, H, W) or (H, W, C) as the layout says."""
        channels = self.spec.channels
        if self.spec.layout == "nchw":
            return (channels, self.height, self.width)
        return (self.height, self.width, channels)

    def __call__(self, image: npt.NDArray[np.uint8]) -> FloatArray:
        if self.spec.color == "rgb":
            image = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        content, top, left = self._fit(image)
        pixel_pad = self.spec.pixel_pad
        if pixel_pad is not None and content.shape[:2] != (self.height, self.width):
            content, top, left = self._border(content, top, left, pixel_pad), 0, 0
        if content.ndim == 2:
            content = content[:, :, None]
        out = normalise(self.spec, content.astype(np.float32))
        if out.shape[:2] != (self.height, self.width):  # the border is given after normalising
            canvas = np.full((self.height, self.width, out.shape[2]), self.spec.pad_normalized, np.float32)
            canvas[top : top + out.shape[0], left : left + out.shape[1]] = out
            out = canvas
        if self.spec.layout == "nchw":
            out = out.transpose(2, 0, 1)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _fit(self, image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], int, int]:
        """The resized image and its (top, left) place in the network's height x width; it fills them
        but for letterbox and fixed_height, whose border comes after."""
        interpolation = _INTERPOLATION[self.spec.interpolation]
        h, w = image.shape[:2]
        if self.spec.resize == "stretch":
            return _cv_resize(image, self.width, self.height, interpolation), 0, 0
        if self.spec.resize == "letterbox":
            ratio = min(self.height / h, self.width / w)
            new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
            inner = _cv_resize(image, new_w, new_h, interpolation)
            return inner, (self.height - new_h) // 2, (self.width - new_w) // 2
        if self.spec.resize == "fixed_height":
            # PaddleOCR's formula in floats (ceil(H * (w / h))), so widths match its recognizers' to the
            # column even where float rounding lifts an exact product past an integer.
            new_w = min(self.width, math.ceil(self.height * (w / h)))
            return _cv_resize(image, new_w, self.height, interpolation), 0, 0
        # short_side_crop: scale so the short side is `short_side` (at least covering the crop), center-crop.
        short = self.spec.short_side
        ratio = short / min(h, w) if short is not None else max(self.height / h, self.width / w)
        ratio = max(ratio, self.height / h, self.width / w)
        new_w, new_h = max(self.width, round(w * ratio)), max(self.height, round(h * ratio))
        scaled = _cv_resize(image, new_w, new_h, interpolation)
        top, left = (new_h - self.height) // 2, (new_w - self.width) // 2
        return scaled[top : top + self.height, left : left + self.width], 0, 0

    def _border(self, inner: npt.NDArray[np.uint8], top: int, left: int, pad: float) -> npt.NDArray[np.uint8]:
        """``inner`` at (top, left) in the network's height x width, the rest ``pad`` (pixel units)."""
        new_h, new_w = inner.shape[:2]
        return np.asarray(
            cv2.copyMakeBorder(
                inner,
                top,
                self.height - new_h - top,
                left,
                self.width - new_w - left,
                cv2.BORDER_CONSTANT,
                value=(pad, pad, pad, pad),
            ),
            dtype=np.uint8,
        )


def _cv_resize(
    image: npt.NDArray[np.uint8], width: int, height: int, interpolation: int
) -> npt.NDArray[np.uint8]:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(cv2.resize(image, (width, height), interpolation=interpolation), dtype=np.uint8)


def normalise(spec: PreprocessSection, pixels: FloatArray) -> FloatArray:
    """(x * scale - mean) / std per channel (the last axis), in float32, as one multiply-add."""
    channels = pixels.shape[-1]
    std = np.resize(np.asarray(spec.std, dtype=np.float32), channels)
    mean = np.resize(np.asarray(spec.mean, dtype=np.float32), channels)
    gain = np.float32(spec.scale) / std
    out: FloatArray = pixels * gain - mean / std
    return out


def value_range_amax(spec: PreprocessSection) -> np.float32:
    """The largest |x| the preprocessing can give: pixels 0 and 255 (a letterbox border in pixels
    lies within them) through the same float32 arithmetic as every image, or a border given after
    normalising (``pad_normalized``) when that is larger."""
    extremes = np.array([[0.0] * spec.channels, [255.0] * spec.channels], dtype=np.float32)
    amax = np.float32(np.abs(normalise(spec, extremes)).max())
    if spec.pad_normalized is not None:
        amax = max(amax, np.float32(abs(spec.pad_normalized)))
    return amax
