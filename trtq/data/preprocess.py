"""Decoded image -> one float32 network input, as the config's preprocess section says."""

from __future__ import annotations

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

    def __call__(self, image: npt.NDArray[np.uint8]) -> FloatArray:
        if self.spec.color == "rgb":
            image = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        resized = self._resize(image)
        if resized.ndim == 2:
            resized = resized[:, :, None]
        channels = resized.shape[2]
        std = np.resize(np.asarray(self.spec.std, dtype=np.float32), channels)
        mean = np.resize(np.asarray(self.spec.mean, dtype=np.float32), channels)
        # (x * scale - mean) / std in one fused multiply-add per pixel.
        gain = np.float32(self.spec.scale) / std
        out = resized.astype(np.float32) * gain - mean / std
        if self.spec.layout == "nchw":
            out = out.transpose(2, 0, 1)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _resize(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        interpolation = _INTERPOLATION[self.spec.interpolation]
        h, w = image.shape[:2]
        if self.spec.resize == "stretch":
            return _cv_resize(image, self.width, self.height, interpolation)
        if self.spec.resize == "letterbox":
            ratio = min(self.height / h, self.width / w)
            new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
            inner = _cv_resize(image, new_w, new_h, interpolation)
            top, left = (self.height - new_h) // 2, (self.width - new_w) // 2
            pad = self.spec.pad_value
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
        # short_side_crop: scale so the short side is `short_side` (at least covering the crop), center-crop.
        short = self.spec.short_side
        ratio = short / min(h, w) if short is not None else max(self.height / h, self.width / w)
        ratio = max(ratio, self.height / h, self.width / w)
        new_w, new_h = max(self.width, round(w * ratio)), max(self.height, round(h * ratio))
        scaled = _cv_resize(image, new_w, new_h, interpolation)
        top, left = (new_h - self.height) // 2, (new_w - self.width) // 2
        return scaled[top : top + self.height, left : left + self.width]


def _cv_resize(
    image: npt.NDArray[np.uint8], width: int, height: int, interpolation: int
) -> npt.NDArray[np.uint8]:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(cv2.resize(image, (width, height), interpolation=interpolation), dtype=np.uint8)
