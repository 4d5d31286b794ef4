""""Label one, find all": boxes drawn with an ``exemplar...`` smart RectangleLabels control become every similar
instance of their label (SAM 3 detectors)."""

from __future__ import annotations

from typing import Any

import numpy as np

from prelabel.core.errors import BadRequest
from prelabel.labelstudio.config import LabelConfig
from prelabel.labelstudio.predict.setup import PredictorSetup
from prelabel.labelstudio.results import prediction


def find_similar(setup: PredictorSetup, image: np.ndarray, config: LabelConfig, label: str | None,
                 positive: list[np.ndarray], negative: list[np.ndarray]) -> dict[str, Any]:
    """Every instance like the ``positive`` pixel boxes (``negative`` ones steer away), in the output controls."""
    if label is None or not positive:
        raise BadRequest("an exemplar prompt needs at least one positive box with a label")
    regions = setup.labeler.find_similar(image, config.prompts, label, np.stack(positive),
                                         np.stack(negative) if negative else None, setup.calibration)
    return prediction(regions, config, regions.meta["model_version"], setup.review_threshold)
