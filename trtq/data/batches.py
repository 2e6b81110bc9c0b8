"""Image (and .npy tensor) entries -> fixed-size float32 batches, read ahead of the consumer on threads.

OpenCV releases the GIL while decoding and resizing, so a few threads keep calibration from waiting
on I/O. Results come back in list order, because TensorRT's histogram depends on batch order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import cycle, islice
from typing import Literal

import numpy as np

from trtq.data.image_list import ImageEntry
from trtq.data.listed_file import BadImageError
from trtq.data.preprocess import FloatArray, Preprocessor, decode_image
from trtq.data.tensor_file import load_tensor
from trtq.errors import TrtqError


@dataclass(frozen=True)
class Batch:
    data: FloatArray
    entries: tuple[ImageEntry, ...]


@dataclass
class BatchStats:
    """What the pipeline did with the list: images used, skipped (with reasons), dropped, wrapped."""

    used: int = 0
    skipped: list[BadImageError] = field(default_factory=list)
    dropped: int = 0
    wrapped: int = 0
    batches: int = 0


@dataclass
class BatchSource:
    entries: Sequence[ImageEntry]
    preprocessor: Preprocessor
    batch_size: int
    last_batch: Literal["drop", "wrap"] = "drop"
    on_bad_image: Literal["error", "skip"] = "error"
    workers: int = 2
    stats: BatchStats = field(default_factory=BatchStats)

    @property
    def expected_batches(self) -> int:
        """Batches if no image is skipped (for progress bars)."""
        full, rest = divmod(len(self.entries), self.batch_size)
        return full + (1 if rest and self.last_batch == "wrap" else 0)

    def __iter__(self) -> Iterator[Batch]:
        self.stats = BatchStats()
        pending: list[tuple[ImageEntry, FloatArray]] = []
        first: list[tuple[ImageEntry, FloatArray]] = []
        for entry, item in self._prepared():
            pending.append((entry, item))
            if len(first) < self.batch_size:
                first.append((entry, item))
            if len(pending) == self.batch_size:
                yield self._emit(pending)
                pending = []
        if pending:
            if self.last_batch == "wrap":
                # From the start of the list, round again if the list is shorter than one batch.
                fill = list(islice(cycle(first), self.batch_size - len(pending)))
                self.stats.wrapped = len(fill)
                yield self._emit(pending + fill, fresh=len(pending))
            else:
                self.stats.dropped = len(pending)
        if self.stats.batches == 0:
            if not pending and self.stats.skipped:  # wrap or not, nothing was left to batch
                raise TrtqError(
                    f"{self.entries[0].listed_in}: no usable image, all {len(self.stats.skipped)} "
                    f"were skipped (calibration.on_bad_image: skip); the first: {self.stats.skipped[0]}"
                )
            raise TrtqError(
                f"{self.entries[0].listed_in}: {len(pending)} usable image(s), fewer than one batch of "
                f"{self.batch_size}; add images, set calibration.last_batch: wrap "
                "or lower the input's batch dimension"
            )

    def _emit(self, items: list[tuple[ImageEntry, FloatArray]], fresh: int | None = None) -> Batch:
        """One batch; ``fresh`` counts the items not repeated from the start of the list."""
        self.stats.batches += 1
        self.stats.used += len(items) if fresh is None else fresh
        return Batch(data=np.stack([item for _, item in items]), entries=tuple(entry for entry, _ in items))

    def _load(self, entry: ImageEntry) -> FloatArray:
        if entry.is_tensor:
            return load_tensor(entry, self.preprocessor.item_shape, self.preprocessor.spec.layout)
        return self.preprocessor(decode_image(entry, gray=self.preprocessor.spec.color == "gray"))

    def _prepared(self) -> Iterator[tuple[ImageEntry, FloatArray]]:
        """Preprocessed images in list order, with a bounded window of decodes running ahead."""
        window = max(2 * self.batch_size, 4 * self.workers)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="trtq-decode") as pool:
            queue: deque[tuple[ImageEntry, Future[FloatArray]]] = deque()
            todo = iter(self.entries)
            try:
                for entry in todo:
                    queue.append((entry, pool.submit(self._load, entry)))
                    if len(queue) >= window:
                        yield from self._take(queue)
                while queue:
                    yield from self._take(queue)
            finally:
                for _, future in queue:
                    future.cancel()

    def _take(
        self, queue: deque[tuple[ImageEntry, Future[FloatArray]]]
    ) -> Iterator[tuple[ImageEntry, FloatArray]]:
        entry, future = queue.popleft()
        try:
            yield entry, future.result()
        except BadImageError as exc:
            if self.on_bad_image == "error":
                raise
            self.stats.skipped.append(exc)
