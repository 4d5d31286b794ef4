"""What the pipeline needs from a detector, a segmenter and a video tracker."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from prelabel.core.labels import LabelPrompt
from prelabel.core.masks import Masks
from prelabel.core.regions import Regions


class Detector(Protocol):
    """Text-prompted box detector.

    A detector cuts nothing but its ``floor``: the Labeler alone applies each label's cut (its own threshold or the
    default, learned cuts, exploration), so that rule is written once (:func:`prelabel.core.labels.box_cuts`).
    """

    model_id: str
    random_weights: bool

    def detect(self, image: np.ndarray, labels: Sequence[LabelPrompt], floor: float) -> Regions:
        """Every candidate for ``labels`` on an ``(H, W, 3)`` uint8 RGB image whose best label scores at least
        ``floor`` (the lowest cut the caller will apply), as that label with that score; before NMS."""
        ...


class Segmenter(Protocol):
    """Promptable segmenter (SAM-like) with a reusable image embedding."""

    model_id: str
    random_weights: bool
    encoder_calls: int

    def segment_boxes(self, image: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[Masks, np.ndarray]:
        """One mask per pixel box (kept as box crops) and ``(N,)`` predicted IoU, decoded in one call."""
        ...

    def expect_images(self, count: int | None) -> None:
        """A job will encode ``count`` images (``None``: open-ended): a chance to prepare a faster runtime."""
        ...

    def segment_points(
        self,
        image: np.ndarray,
        points: np.ndarray,
        point_labels: np.ndarray,
        box_xyxy: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        """One ``(H, W)`` bool mask and its predicted IoU from clicks (1 = object, 0 = background)."""
        ...


@runtime_checkable
class ConceptSegmenter(Detector, Protocol):
    """A detector that segments what it finds (SAM 3): ``detect`` returns Regions with ``masks`` and
    ``mask_scores``, so the pipeline runs no segmenter on them. It also answers exemplar prompts and clicks
    on its cached image features (the Labeler tells it from a plain detector by this protocol)."""

    encoder_calls: int

    def find_similar(
        self,
        image: np.ndarray,
        labels: Sequence[LabelPrompt],
        label: str | int,
        positive_boxes: np.ndarray,
        negative_boxes: np.ndarray | None = None,
        *,
        floor: float,
    ) -> Regions:
        """Every instance like the positive exemplar pixel boxes (minus the negatives) scoring at least ``floor``,
        as ``label``."""
        ...

    def segment_points(
        self,
        image: np.ndarray,
        points: np.ndarray,
        point_labels: np.ndarray,
        box_xyxy: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        """One ``(H, W)`` bool mask and its predicted IoU from clicks, on the cached image features."""
        ...


@runtime_checkable
class StoresEmbeddings(Protocol):
    """A model whose image embeddings can live in an embedding store (SAM-family segmenters; SAM 3, whose
    tracker's click features do)."""

    def use_store(self, url: str | None, budget_bytes: int, runtime: str) -> None:
        """Keep embeddings in the store at ``url`` too (``None``: no store)."""
        ...


class Tracker(Protocol):
    """Box-prompted video object tracker (SAM 2 video-like): propagates boxes through a stream of frames.

    Implementations keep bounded state (a window of recent frames' memory), so a stream of any length can pass.
    """

    model_id: str
    random_weights: bool

    def track(self, frames: Iterable[np.ndarray], boxes_xyxy: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``boxes_xyxy`` ``(N, 4)`` are the objects on the first of ``frames`` (``(H, W, 3)`` uint8 RGB);
        yields, for every following frame, ``(N, 4)`` pixel boxes and ``(N,)`` scores in ``[0, 1]`` (how sure
        the tracker is that each object is still visible; below 0.5 it is taken as lost on that frame)."""
        ...
