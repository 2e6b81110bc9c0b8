""".npy tensors in image lists: taken as they are (mixed with images or not), every unusable one a
per-entry error naming list file and line, hashed by their bytes like images, and calibrating on
tensors gives the cache calibrating on the images they were made from gives."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import WriteConfig, listed_photos
from typer.testing import CliRunner

from trtq.cli.main import app
from trtq.config import load_config
from trtq.config.schema import PreprocessSection
from trtq.data import BadImageError, BatchSource, Preprocessor, decode_image, read_image_list
from trtq.data.from_config import calibration_entries
from trtq.data.image_list import ImageEntry
from trtq.fingerprint import fingerprint_config

NCHW = Preprocessor(PreprocessSection(color="bgr", scale=1 / 255, mean=[0.5], std=[0.5]), 48, 192)


def preprocessed(path: Path, preprocessor: Preprocessor = NCHW) -> np.ndarray:
    return preprocessor(decode_image(ImageEntry(path=path, listed_in=path.parent), gray=False))


def test_a_list_may_mix_tensors_and_images(tmp_path: Path, photos: list[Path]) -> None:
    tensor = np.random.default_rng(0).standard_normal((3, 48, 192)).astype(np.float32)
    np.save(tmp_path / "made-elsewhere.npy", tensor)
    (tmp_path / "list.txt").write_text(f"{photos[0]}\nmade-elsewhere.npy\n{photos[1]}\n{photos[2]}\n")
    (first, second) = list(BatchSource(read_image_list(tmp_path / "list.txt"), NCHW, batch_size=2))
    np.testing.assert_array_equal(first.data[0], preprocessed(photos[0]))
    np.testing.assert_array_equal(first.data[1], tensor)  # untouched: no resize, no scale/mean/std
    np.testing.assert_array_equal(second.data, np.stack([preprocessed(p) for p in photos[1:3]]))


def test_a_directory_lists_its_tensors_in_name_order(tmp_path: Path) -> None:
    for name in ["b.npy", "a.NPY", "notes.txt"]:
        np.save(tmp_path / "x.npy", np.zeros((3, 48, 192), np.float32))
        (tmp_path / "x.npy").rename(tmp_path / name)
    assert [e.path.name for e in read_image_list(tmp_path)] == ["a.NPY", "b.npy"]


def test_layout_nhwc_takes_height_width_channels(tmp_path: Path) -> None:
    nhwc = Preprocessor(PreprocessSection(color="gray", layout="nhwc"), 48, 192)
    np.save(tmp_path / "t.npy", np.ones((48, 192, 1), np.float32))
    np.save(tmp_path / "wrong.npy", np.ones((1, 48, 192), np.float32))
    (tmp_path / "list.txt").write_text("t.npy\nwrong.npy\n")
    with pytest.raises(BadImageError) as info:
        list(BatchSource(read_image_list(tmp_path / "list.txt"), nhwc, batch_size=1))
    assert info.value.entry.line == 2
    assert (
        info.value.reason
        == "has shape [1, 48, 192], expected [48, 192, 1] (one item of the input, nhwc layout)"
    )


def _bad_tensors(directory: Path) -> dict[str, str]:
    """File name -> the reason trtq must give; each file written here."""
    good = np.zeros((3, 48, 192), np.float32)
    np.save(directory / "hwc.npy", good.transpose(1, 2, 0))
    np.save(directory / "float64.npy", good.astype(np.float64))
    np.save(directory / "uint8.npy", good.astype(np.uint8))
    nan, inf = good.copy(), good.copy()
    nan[0, 0, :3] = np.nan
    inf[2, 47, 191] = -np.inf
    np.save(directory / "nan.npy", nan)
    np.save(directory / "inf.npy", inf)
    np.save(directory / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (directory / "text.npy").write_text("0.5 0.5 0.5\n")
    (directory / "truncated.npy").write_bytes((directory / "nan.npy").read_bytes()[:1000])
    np.savez(directory / "archive.npz", good)
    (directory / "archive.npz").rename(directory / "archive.npy")
    return {
        "hwc.npy": "has shape [48, 192, 3], expected [3, 48, 192] (one item of the input, nchw layout)",
        "float64.npy": "has dtype float64, expected float32 (the network's input type)",
        "uint8.npy": "has dtype uint8, expected float32 (the network's input type)",
        "nan.npy": "has 3 NaN or infinite values",
        "inf.npy": "has 1 NaN or infinite values",
        "objects.npy": "holds Python objects (an object array); save a float32 array",
        "text.npy": "not a .npy file (no NumPy array header)",
        "truncated.npy": "not a readable .npy array: ",
        "archive.npy": "not a .npy file (no NumPy array header)",
        "missing.npy": "tensor file not found",
        "folder.npy": "is a directory, not a tensor",
    }


def test_every_unusable_tensor_is_named_with_list_file_and_line(tmp_path: Path, photos: list[Path]) -> None:
    (tmp_path / "folder.npy").mkdir()
    for name, reason in _bad_tensors(tmp_path).items():
        listing = tmp_path / "list.txt"
        listing.write_text(f"{photos[0]}\n{name}\n")
        with pytest.raises(BadImageError) as info:
            list(BatchSource(read_image_list(listing), NCHW, batch_size=2))
        assert str(info.value).startswith(f"{listing}:2: '{tmp_path / name}': {reason}"), name


def test_skip_policy_skips_unusable_tensors(tmp_path: Path, photos: list[Path]) -> None:
    bad = _bad_tensors(tmp_path)
    np.save(tmp_path / "good.npy", preprocessed(photos[1]))
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([str(photos[0]), *bad, "good.npy"]) + "\n")
    source = BatchSource(read_image_list(listing), NCHW, batch_size=2, on_bad_image="skip")
    (batch,) = list(source)
    assert [e.path.name for e in batch.entries] == [photos[0].name, "good.npy"]
    assert len(source.stats.skipped) == len(bad)


def test_tensors_are_fingerprinted_by_their_bytes(write_config: WriteConfig, tmp_path: Path) -> None:
    config_path = write_config(n_images=1)
    first = tmp_path / "first.npy"
    np.save(first, np.zeros((3, 48, 192), np.float32))
    images = tmp_path / "images.txt"
    images.write_text(images.read_text() + "first.npy\n")
    config = load_config(config_path)
    before = fingerprint_config(config, calibration_entries(config))
    assert before.image_hashes[1] == hashlib.sha256(first.read_bytes()).hexdigest()[:16]
    np.save(first, np.full((3, 48, 192), 0.5, np.float32))
    after = fingerprint_config(config, calibration_entries(config))
    assert before.differences(after, calibration_entries(config)) == [
        "calibration images changed: 2 -> 2 images, 1 new or modified, 1 gone "
        f"(first new: {images}:2: '{first}')"
    ]


def test_fingerprint_of_a_config_without_the_new_keys_is_unchanged(write_config: WriteConfig) -> None:
    """Caches calibrated before pad_normalized existed stay fresh: the preprocess part is hashed as
    304abf1 hashed it (pad_value the default grey, no pad_normalized key)."""
    config = load_config(write_config(n_images=1))
    assert fingerprint_config(config, calibration_entries(config)).preprocess == {
        "color": "bgr",
        "resize": "stretch",
        "short_side": None,
        "pad_value": 114.0,
        "interpolation": "linear",
        "scale": 1 / 255,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "layout": "nchw",
    }


def test_calibrating_on_tensors_gives_the_cache_of_their_images(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """The tensors are the config's own preprocessing of the same photos, saved: the batches, so the
    histograms and every scale, must be the same; only the fingerprint's file hashes differ. The
    input's threshold comes from its histogram on both sides (a tensor list has no preprocessing to
    take the range from; tests/test_input_range.py has the other case)."""
    config_path = write_config(n_images=4, input_range="histogram")
    runner = CliRunner()
    assert runner.invoke(app, ["calibrate", str(config_path)]).exit_code == 0
    config = load_config(config_path)
    lines = []
    for number, entry in enumerate(calibration_entries(config)):
        np.save(tmp_path / f"t{number}.npy", preprocessed(entry.path))
        lines.append(f"t{number}.npy")
    (tmp_path / "tensors.txt").write_text("\n".join(lines) + "\n")
    data = yaml.safe_load(config_path.read_text())
    data["calibration"].update(images="tensors.txt", cache="out/tensors.cache")
    tensors_config = tmp_path / "tensors.yaml"
    tensors_config.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["calibrate", str(tensors_config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "tensors.cache").read_bytes() == config.cache_path.read_bytes()
    assert len(listed_photos(4)) == len(lines)
