"""The Labeler is the only place that cuts: every detector family returns its candidates down to the floor it is
given, ignoring labels' own thresholds, and the Labeler keeps exactly those at or above each label's cut."""

from __future__ import annotations

import numpy as np
import pytest

from prelabel.core.labels import LabelPrompt
from prelabel.models.specs import RANDOM_DETECTOR_FAMILIES, TEXT_THRESHOLD_FAMILIES, random_specs
from prelabel.pipeline import build_labeler
from prelabel.pipeline.labeler import Labeler, Thresholds

FAMILIES = ("random-tiny", "random-tiny-mm-grounding-dino", "random-tiny-owlv2", "random-tiny-omdet-turbo",
            "random-tiny-sam3")
LABELS = (LabelPrompt("cat", ("cat",)), LabelPrompt("dog", ("dog", "puppy")))


class FloorSpy:
    """Passes detect() to a real detector and records the floor it was asked for."""

    def __init__(self, detector) -> None:
        self.inner, self.floors = detector, []
        self.model_id, self.random_weights = detector.model_id, detector.random_weights

    def detect(self, image, labels, floor):
        self.floors.append(floor)
        return self.inner.detect(image, labels, floor)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 255, (96, 128, 3), dtype=np.uint8)


def test_every_random_detector_spec_has_a_family():
    assert set(RANDOM_DETECTOR_FAMILIES) == set(random_specs("detector"))
    assert {RANDOM_DETECTOR_FAMILIES[spec] for spec in FAMILIES} == set(RANDOM_DETECTOR_FAMILIES.values())


@pytest.mark.parametrize("spec", FAMILIES)
def test_the_detector_returns_candidates_below_every_cut_and_the_labeler_alone_cuts(spec, image):
    detector = build_labeler(detector=spec, segmenter="", dtype="fp32", detector_runtime="torch").detector
    everything = detector.detect(image, LABELS, 0.0)
    scores = np.unique(everything.scores)
    assert len(scores) >= 4, "enough distinct scores to place cuts between them"
    default = float(scores[len(scores) // 2])  # a cut half the candidates are below
    own = float(scores[len(scores) // 4])  # dog's own, lower cut
    labels = (LABELS[0], LabelPrompt("dog", ("dog", "puppy"), box_threshold=own))
    assert (everything.scores < default).any(), "candidates below the default cut come back"
    floored = detector.detect(image, labels, own)
    assert np.array_equal(floored.scores, everything.scores[everything.scores >= own]), \
        "the detector cuts at the floor alone, whatever the labels' own thresholds"

    spy = FloorSpy(detector)
    text = 0.0 if RANDOM_DETECTOR_FAMILIES[spec] in TEXT_THRESHOLD_FAMILIES else None
    labeler = Labeler(spy, None, Thresholds(box_threshold=default, text_threshold=text, nms_iou=1.0,
                                            max_detections=10_000))
    kept = labeler.predict(image, labels, with_masks=False)
    assert spy.floors == [own], "the detector is asked for the lowest cut"
    cuts = np.array([default, own])
    expected = everything.select(np.flatnonzero(everything.scores >= cuts[everything.label_ids]))
    assert 0 < len(kept) < len(everything)
    assert as_set(kept) == as_set(expected)
    assert (np.diff(kept.scores) <= 0).all(), "best first"


def as_set(regions) -> list[tuple]:
    return sorted(zip(regions.label_ids.tolist(), regions.scores.tolist(), map(tuple, regions.boxes_xyxy.tolist())))


def test_the_text_threshold_is_a_floor_under_every_label_cut_of_grounding_dino_only():
    labels = (LabelPrompt("cat", ("cat",), box_threshold=0.1), LabelPrompt("dog", ("dog",)))
    np.testing.assert_array_equal(Thresholds(0.35, 0.25).cuts(labels), [0.25, 0.35])
    np.testing.assert_array_equal(Thresholds(0.35, None).cuts(labels), [0.1, 0.35])
