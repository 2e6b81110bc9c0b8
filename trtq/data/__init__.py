"""Images -> calibration batches: list reading, decoding, preprocessing and background batching."""

from trtq.data.batches import Batch, BatchSource, BatchStats
from trtq.data.image_list import ImageEntry, read_image_list
from trtq.data.listed_file import BadImageError
from trtq.data.preprocess import Preprocessor, decode_image

__all__ = [
    "BadImageError",
    "Batch",
    "BatchSource",
    "BatchStats",
    "ImageEntry",
    "Preprocessor",
    "decode_image",
    "read_image_list",
]
