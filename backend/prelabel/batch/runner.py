"""The batch pipeline shared by both engines, and the local engine (background decoding, one model)."""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from prelabel.batch.checkpoint import Checkpoint
from prelabel.batch.records import ImageItem, bug_record, error_record, regions_record
from prelabel.batch.sources import ImageLoader
from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.core.regions import Regions
from prelabel.pipeline import Labeler
from prelabel.pipeline.tiling import predict_tiled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOptions:
    """How each image is labeled; part of the checkpoint header, so a resume cannot change it."""

    with_masks: bool = True
    tile: int | None = None
    overlap: float = 0.2

    def header(self) -> dict[str, Any]:
        return asdict(self)


def label_image(labeler: Labeler, labels: Sequence[LabelPrompt], options: BatchOptions, image: np.ndarray) -> Regions:
    """Regions of one image, tiled when asked."""
    if options.tile:
        return predict_tiled(labeler, image, labels, options.tile, options.overlap, options.with_masks)
    return labeler.predict(image, labels, with_masks=options.with_masks)


def label_item(
    labeler: Labeler, labels: Sequence[LabelPrompt], options: BatchOptions, item: ImageItem,
    load: Callable[[ImageItem], np.ndarray],
) -> dict[str, Any]:
    """The checkpoint record of one item: its regions, the reason it could not be read, or the bug that stopped it
    (with its traceback, logged too: the batch goes on, and a resume retries it)."""
    try:
        image = load(item)
    except PrelabelError as exc:  # ImageError, ImageFetchError: the input's fault, reported, never retried
        return error_record(item, str(exc))
    try:
        return regions_record(item, label_image(labeler, labels, options, image))
    except Exception as exc:  # a bug: counted and kept with its traceback, never passed off as a bad image
        log.exception("%s: labeling failed (a bug: please report it with this traceback)", item.uri)
        return bug_record(item, exc)


def progress(total: int, desc: str) -> tqdm:
    """The progress bar both engines show (images/s and ETA)."""
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


def run_local(
    labeler: Labeler, labels: Sequence[LabelPrompt], options: BatchOptions, items: Sequence[ImageItem],
    loader: ImageLoader, checkpoint: Checkpoint, prefetch: int = 4,
) -> None:
    """Label ``items`` in order while the next ``prefetch`` images decode in background threads.

    The labeler is told the job's size first: a runtime conversion starts (in the background) only if it pays
    off for that many images (tiles are encoded one by one: counting images keeps the estimate conservative)."""
    labeler.expect_images(len(items))
    with progress(len(items), "pre-labeling") as bar:
        for item, load in prefetched(items, loader.load, prefetch):
            checkpoint.append(label_item(labeler, labels, options, item, lambda _item, f=load: f.result()))
            bar.update()


def prefetched(
    items: Sequence[ImageItem], load: Callable[[ImageItem], np.ndarray], depth: int,
) -> Iterator[tuple[ImageItem, Future[np.ndarray]]]:
    """Each item with the future of its decoded image, at most ``depth`` decoding ahead."""
    with ThreadPoolExecutor(max_workers=max(1, min(depth, 4)), thread_name_prefix="prelabel-decode") as pool:
        pending: deque[tuple[ImageItem, Future[np.ndarray]]] = deque()
        for item in items:
            pending.append((item, pool.submit(load, item)))
            if len(pending) > depth:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
