"""One annotated or predicted shape read back from a tool or a file, in pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Shape:
    """A box, polygon or mask of one label, as a tool stored it (Label Studio result, COCO annotation).

    ``box_xyxy`` is the tight pixel box (of the rotated rectangle, the polygon or the mask); ``mask`` is
    set for polygons and brushes when the image size is known; ``polygon`` keeps polygon vertices
    ``(K, 2)``; ``score`` and ``features`` are a prediction's (prelabel's signals, when it made the shape);
    ``from_name`` is the Label Studio control; ``ref`` says where the shape is in its file.
    """

    label: str
    box_xyxy: np.ndarray
    image_size: tuple[int, int] = (0, 0)  # (width, height); (0, 0) when the source does not say
    mask: np.ndarray | None = None
    polygon: np.ndarray | None = None
    score: float | None = None
    features: dict[str, float] | None = None
    from_name: str = ""
    ref: str = ""
