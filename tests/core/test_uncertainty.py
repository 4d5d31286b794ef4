"""Uncertainty signals, heuristic confidence, calibration and the task score."""

import numpy as np
import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.geometry import box_iou
from prelabel.core.regions import Regions
from prelabel.core.uncertainty import (
    FEATURES,
    Calibration,
    heuristic_confidence,
    region_features,
    score_regions,
    task_score,
)
from prelabel.feedback.metrics import expected_calibration_error
from prelabel.feedback.validation import MonotoneCalibration

COL = {name: i for i, name in enumerate(FEATURES)}


def regions_with_masks() -> Regions:
    masks = np.zeros((3, 100, 100), dtype=bool)
    masks[0, 10:30, 10:30] = True  # exactly its box
    masks[1, 50:60, 50:60] = True  # a quarter of its 20x20 box
    masks[2, 12:32, 12:32] = True
    return Regions((100, 100), ("a", "b"), [[10, 10, 30, 30], [50, 50, 70, 70], [12, 12, 32, 32]],
                   scores=[0.9, 0.5, 0.4], label_ids=[0, 0, 1], masks=masks, data={"mask_score": [0.95, 0.6, 0.8]})


def test_features_have_known_values():
    regions = regions_with_masks()
    f = region_features(regions, thresholds=[0.3, 0.4])
    assert f.shape == (3, len(FEATURES))
    assert f[:, COL["score"]] == pytest.approx([0.9, 0.5, 0.4])
    assert f[:, COL["margin"]] == pytest.approx([(0.9 - 0.3) / 0.7, (0.5 - 0.3) / 0.7, 0.0], abs=1e-6)
    assert f[:, COL["mask_score"]] == pytest.approx([0.95, 0.6, 0.8])
    assert f[:, COL["box_mask_iou"]] == pytest.approx([1.0, 0.25, 1.0])
    overlap = box_iou(regions.boxes_xyxy[:1], regions.boxes_xyxy[2:])[0, 0]
    assert f[:, COL["cross_label_iou"]] == pytest.approx([overlap, 0.0, overlap]), "only other labels count"
    assert f[:, COL["sqrt_area"]] == pytest.approx([0.2, 0.2, 0.2])


def test_without_masks_the_mask_signals_are_neutral():
    regions = Regions((100, 100), ("a",), [[0, 0, 10, 10]], scores=[0.7], label_ids=[0])
    f = region_features(regions, [0.35])
    assert f[0, COL["mask_score"]] == 1.0 and f[0, COL["box_mask_iou"]] == 1.0
    assert heuristic_confidence(f) == pytest.approx([0.7])


def test_heuristic_confidence_drops_with_each_bad_signal_and_task_score_is_the_minimum():
    scored = score_regions(regions_with_masks(), [0.3, 0.4])
    confidence = 1 - scored.uncertainty
    assert confidence[0] < 0.9 * 0.95, "overlap with another label lowers confidence"
    assert confidence[1] == pytest.approx(0.5 * 0.6 * 0.25)
    assert task_score(scored) == pytest.approx(confidence.min())
    assert task_score(Regions.empty((10, 10), ["a"])) == 1.0
    assert scored.select([1]).features.shape == (1, len(FEATURES)), "select keeps features aligned"


def test_calibration_learns_a_miscalibrated_score():
    rng = np.random.default_rng(0)
    n = 2000
    features = np.zeros((n, len(FEATURES)))
    features[:, COL["score"]] = rng.uniform(0.35, 1.0, n)
    features[:, COL["mask_score"]] = 1.0
    features[:, COL["box_mask_iou"]] = 1.0
    truth = 1 / (1 + np.exp(-12 * (features[:, COL["score"]] - 0.8)))  # kept only well above 0.8
    kept = rng.uniform(size=n) < truth
    calibration = Calibration.fit(features, kept)
    before = expected_calibration_error(heuristic_confidence(features), kept)
    after = expected_calibration_error(calibration.confidence(features), kept)
    assert before > 0.1 and after < 0.05 and after < before / 3
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    with pytest.raises(ValueError, match="both kept and deleted"):
        Calibration.fit(features, np.ones(n, bool))
    with pytest.raises(PrelabelError, match="other features"):
        Calibration.from_dict({**calibration.to_dict(), "features": ["score"]})


def test_a_calibration_is_a_scoring_that_corrects_no_box():
    regions = regions_with_masks()
    features = region_features(regions, [0.3, 0.3])
    for calibration in (Calibration(tuple(0.5 for _ in FEATURES), -1.0), MonotoneCalibration(2.0, 0.1)):
        assert calibration.correct_boxes(regions) is regions
        scored = score_regions(regions, [0.3, 0.3], calibration)
        assert np.allclose(1.0 - scored.uncertainty, calibration.confidence(features))
    assert np.allclose(1.0 - score_regions(regions, [0.3, 0.3]).uncertainty, heuristic_confidence(features))
