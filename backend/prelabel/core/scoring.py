"""What a feedback fit gives the pipeline: the confidence of each region, and its boxes corrected the way
annotators adjust them. Fits are made in :mod:`prelabel.feedback`; the pipeline only sees these protocols."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from prelabel.core.regions import Regions


class Confidence(Protocol):
    """A calibration: P(an annotator keeps the region) per row of region signals
    (:data:`prelabel.core.features.FEATURES`), and a JSON form for ``model_version``."""

    def confidence(self, features: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


class Scoring(Confidence, Protocol):
    """What the Labeler scores and corrects regions with (:meth:`prelabel.feedback.fit.Learned.scoring`): a
    calibration's confidence, and ``correct_boxes`` before segmentation (the regions unchanged where no box
    correction was learned). ``to_dict`` feeds ``model_version``, so a new fit is a new version."""

    def correct_boxes(self, regions: Regions) -> Regions: ...


class CorrectsNoBox:
    """A calibration's part of :class:`Scoring`: it corrects no box, the regions stay as they are."""

    def correct_boxes(self, regions: Regions) -> Regions:
        return regions
