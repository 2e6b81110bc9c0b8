"""Preprocessing on real photos, checked against independent OpenCV/NumPy computations."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from trtq.config.schema import PreprocessSection
from trtq.data.image_list import ImageEntry
from trtq.data.preprocess import Preprocessor, decode_image


def load(path: Path, gray: bool = False) -> np.ndarray:
    return decode_image(ImageEntry(path=path, listed_in=path.parent), gray=gray)


def chelsea(photos: list[Path]) -> Path:
    return next(p for p in photos if p.name == "chelsea.png")  # 451 x 300 cat photo


def test_stretch_rgb_nchw_with_imagenet_normalisation(photos: list[Path]) -> None:
    spec = PreprocessSection(color="rgb", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    out = Preprocessor(spec, 224, 224)(load(chelsea(photos)))
    bgr = cv2.imread(str(chelsea(photos)))
    rgb = cv2.cvtColor(cv2.resize(bgr, (224, 224), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    expected = ((rgb / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_bgr_nhwc_keeps_opencv_order(photos: list[Path]) -> None:
    spec = PreprocessSection(
        color="bgr", layout="nhwc", scale=1.0, mean=[0.0], std=[1.0], interpolation="area"
    )
    out = Preprocessor(spec, 100, 150)(load(chelsea(photos)))
    expected = cv2.resize(cv2.imread(str(chelsea(photos))), (150, 100), interpolation=cv2.INTER_AREA)
    assert out.shape == (100, 150, 3)
    np.testing.assert_array_equal(out, expected.astype(np.float32))


def test_letterbox_keeps_aspect_and_pads_with_pad_value(photos: list[Path]) -> None:
    spec = PreprocessSection(color="bgr", resize="letterbox", pad_value=114, scale=1.0, layout="nhwc")
    out = Preprocessor(spec, 320, 320)(load(chelsea(photos)))  # 451x300 -> 320x213, 53/54 rows of padding
    assert out.shape == (320, 320, 3)
    assert np.all(out[:53] == 114) and np.all(out[-54:] == 114)
    inner = cv2.resize(cv2.imread(str(chelsea(photos))), (320, 213), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out[53:266], inner.astype(np.float32))


def test_short_side_resize_then_center_crop(photos: list[Path]) -> None:
    spec = PreprocessSection(color="bgr", resize="short_side_crop", short_side=256, scale=1.0, layout="nhwc")
    out = Preprocessor(spec, 224, 224)(load(chelsea(photos)))
    scaled = cv2.resize(cv2.imread(str(chelsea(photos))), (385, 256), interpolation=cv2.INTER_LINEAR)
    top, left = (256 - 224) // 2, (385 - 224) // 2
    np.testing.assert_array_equal(out, scaled[top : top + 224, left : left + 224].astype(np.float32))


def test_gray_single_channel(photos: list[Path]) -> None:
    spec = PreprocessSection(color="gray", mean=[0.5], std=[0.25])
    out = Preprocessor(spec, 28, 28)(load(chelsea(photos), gray=True))
    gray = cv2.resize(cv2.imread(str(chelsea(photos)), cv2.IMREAD_GRAYSCALE), (28, 28))
    assert out.shape == (1, 28, 28)
    np.testing.assert_allclose(out[0], (gray / 255.0 - 0.5) / 0.25, atol=1e-5)


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "short_side_crop", "fixed_height"])
def test_every_mode_gives_the_network_shape_on_every_photo(photos: list[Path], mode: str) -> None:
    pad = {"pad_normalized": 0.0} if mode == "fixed_height" else {}
    preprocess = Preprocessor(PreprocessSection(resize=mode, **pad), 48, 192)  # type: ignore[arg-type]
    for path in photos:
        assert preprocess(load(path)).shape == (3, 48, 192)


def test_png_with_a_malformed_colour_profile_decodes_silently_and_unchanged(
    photos: list[Path], capfd: pytest.CaptureFixture[str]
) -> None:
    page = next(p for p in photos if p.name == "page.png")  # its iCCP chunk makes libpng warn
    expected = cv2.imread(str(page))
    capfd.readouterr()
    decoded = load(page)
    assert "libpng" not in capfd.readouterr().err
    np.testing.assert_array_equal(decoded, expected)


PP_OCR_REC = PreprocessSection(
    color="bgr", resize="fixed_height", pad_normalized=0.0, scale=1 / 255, mean=[0.5], std=[0.5]
)


def text_line_crops(image: np.ndarray) -> list[np.ndarray]:
    """The photo, a wide strip (squeezed to the input width), a narrow one, and a 24x100 crop whose
    48 * 100/24 is exactly 200."""
    return [image, image[:30], image[:, :40], image[:24, :100]]


def test_fixed_height_matches_paddleocr_recognizer_preprocessing(photos: list[Path]) -> None:
    """Oracle: rapidocr's copy of PaddleOCR's TextRecognizer.resize_norm_img (height 48, width
    ceil(48 * w/h) up to 320, cv2.resize INTER_LINEAR, (x/255 - 0.5)/0.5, zeros on the right). Same
    interpolation and widths; the normalisation differs only in float32 rounding order (trtq: one
    multiply-add), at most one unit in the last place of values up to 1."""
    from types import SimpleNamespace

    from rapidocr_onnxruntime.ch_ppocr_rec.text_recognize import TextRecognizer

    recognizer = SimpleNamespace(rec_image_shape=[3, 48, 320])
    preprocess = Preprocessor(PP_OCR_REC, 48, 320)
    widths = set()
    for path in photos:
        for crop in text_line_crops(cv2.imread(str(path))):
            expected = TextRecognizer.resize_norm_img(recognizer, crop, 320 / 48)  # type: ignore[arg-type]
            out = preprocess(crop)
            assert out.shape == expected.shape == (3, 48, 320) and out.dtype == np.float32
            np.testing.assert_allclose(out, expected, rtol=0, atol=np.spacing(np.float32(1)))
            width = min(320, -(-48 * crop.shape[1] // crop.shape[0]))
            assert np.all(out[:, :, width:] == 0) and np.any(out[:, :, width - 1] != 0)
            widths.add(width)
    assert {7, 73, 200, 320} <= widths  # narrow, 451x300 photos, the exact product, squeezed strips


def test_fixed_height_pads_in_pixel_units_too(photos: list[Path]) -> None:
    spec = PreprocessSection(color="bgr", resize="fixed_height", pad_value=255, scale=1.0, layout="nhwc")
    image = cv2.imread(str(chelsea(photos)))  # 451x300 -> 48x73 (ceil(48 * 451/300) = ceil(72.16))
    out = Preprocessor(spec, 48, 128)(image)
    resized = cv2.resize(image, (73, 48), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out[:, :73], resized.astype(np.float32))
    assert np.all(out[:, 73:] == 255)


def test_letterbox_with_a_border_given_after_normalising(photos: list[Path]) -> None:
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    common = {"color": "rgb", "resize": "letterbox", "mean": mean, "std": std}
    out = Preprocessor(PreprocessSection(**common, pad_normalized=-5.0), 320, 320)(load(chelsea(photos)))
    in_pixels = Preprocessor(PreprocessSection(**common, pad_value=0), 320, 320)(load(chelsea(photos)))
    assert np.all(out[:, :53] == -5.0) and np.all(out[:, -54:] == -5.0)  # 213 rows of image, centred
    np.testing.assert_array_equal(out[:, 53:266], in_pixels[:, 53:266])
    np.testing.assert_allclose(in_pixels[:, 0, 0], -np.array(mean) / np.array(std), rtol=1e-6)
