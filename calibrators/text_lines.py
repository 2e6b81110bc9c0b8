"""Text lines rendered with the DejaVu fonts matplotlib ships, laid out as the PP-OCRv4 recognizer
takes them: 48 pixels high, the text at the left, the rest up to the model width grey (128, the
normalised zero within half a level). Already at the input size, so ``resize: stretch`` leaves them
as they are. Only lines the FP32 recognizer reads exactly are kept, so FP32's decode is the label.

    python calibrators/text_lines.py out/text_lines --count 120
writes out/text_lines/line_NNN.png, lines.txt (the image list) and labels.txt (the text of each).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFont

from trtq.resources import resolve_path

RECOGNIZER = "pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
HEIGHT, WIDTH = 48, 320
PAD = 128
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
WORDS = (  # noqa: SIM905 (a list literal of 42 words reads worse)
    "invoice total amount date order number street city north south river bridge station "
    "market garden window coffee paper stone water green silver march april june october "
    "price tax due paid open closed exit entry floor room gate hall park lane road avenue"
).split()


def font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def texts(rng: random.Random) -> Iterator[str]:
    """Words, numbers, dates and prices, at most about 14 characters: what fits 320 pixels."""
    while True:
        form = rng.randrange(4)
        if form == 0:
            text = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
        elif form == 1:
            text = f"{rng.choice(WORDS).capitalize()} {rng.randrange(1, 999)}"
        elif form == 2:
            text = f"{rng.randrange(1, 29):02d}-{rng.randrange(1, 13):02d}-{rng.randrange(1990, 2030)}"
        else:
            text = f"{rng.choice(WORDS).upper()} ${rng.randrange(1, 9999)}.{rng.randrange(100):02d}"
        if len(text) <= 14:
            yield text


def render(text: str, font_file: Path, size: int, ink: int, paper: int) -> np.ndarray | None:
    """One BGR line image HEIGHT x WIDTH, or None when the text does not fit."""
    font = ImageFont.truetype(str(font_file), size)
    left, top, right, bottom = font.getbbox(text)
    width = right - left + 8
    if width > WIDTH:
        return None
    line = Image.new("L", (width, HEIGHT), paper)
    ImageDraw.Draw(line).text((4 - left, (HEIGHT - (bottom - top)) // 2 - top), text, fill=ink, font=font)
    canvas = np.full((HEIGHT, WIDTH), PAD, dtype=np.uint8)
    canvas[:, :width] = np.asarray(line)
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)


def recognizer() -> tuple[ort.InferenceSession, list[str]]:
    """The FP32 recognizer and its characters (index 0 is CTC's blank, the last a space)."""
    session = ort.InferenceSession(
        str(resolve_path(RECOGNIZER, Path.cwd())), providers=["CPUExecutionProvider"]
    )
    characters = session.get_modelmeta().custom_metadata_map["character"].splitlines()
    return session, ["<blank>", *characters, " "]


def read_text(session: ort.InferenceSession, characters: list[str], image: np.ndarray) -> str:
    """Greedy CTC decode of the FP32 model on one line (rapidocr's preprocessing, written out)."""
    x = (image.astype(np.float32).transpose(2, 0, 1)[None] / 255 - 0.5) / 0.5
    best = session.run(None, {"x": x})[0][0].argmax(axis=1)
    return "".join(characters[c] for i, c in enumerate(best) if c != 0 and (i == 0 or c != best[i - 1]))


def make_lines(directory: Path, count: int, seed: int = 0) -> list[tuple[Path, str]]:
    """``count`` lines FP32 reads exactly, written as PNGs; (path, text) of each."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    session, characters = recognizer()
    made: list[tuple[Path, str]] = []
    source = texts(rng)
    while len(made) < count:
        text = next(source)
        paper = rng.randrange(200, 256)
        image = render(
            text, font_dir() / rng.choice(FONTS), rng.randrange(24, 34), rng.randrange(0, 70), paper
        )
        if image is None or read_text(session, characters, image) != text:
            continue
        path = directory / f"line_{len(made):03d}.png"
        cv2.imwrite(str(path), image)
        made.append((path, text))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    made = make_lines(args.directory, args.count, args.seed)
    (args.directory / "lines.txt").write_text("".join(f"{p.name}\n" for p, _ in made))
    (args.directory / "labels.txt").write_text("".join(f"{text}\n" for _, text in made))
    print(f"{len(made)} lines in {args.directory}")


if __name__ == "__main__":
    main()
