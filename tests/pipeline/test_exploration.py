"""Exploration candidates: one detector pass, shown regions unchanged, a seeded bounded sample below the
threshold with honest weights, flagged in Label Studio's result items and read back into the feedback; the
fit lowers a too-high threshold only with them."""

import numpy as np
import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import parse_labels
from prelabel.core.regions import Regions
from prelabel.core.uncertainty import score_regions, task_score
from prelabel.feedback.fit import best_threshold, fit_feedback
from prelabel.feedback.matching import Outcome, RegionOutcome
from prelabel.labelstudio.config import parse_label_config
from prelabel.labelstudio.result_items import result_shapes
from prelabel.labelstudio.results import CANDIDATE_NOTE, regions_to_results
from prelabel.pipeline import Exploration, Labeler, Thresholds, build_labeler, exploration
from prelabel.pipeline.exploration import split_candidates
from prelabel.settings import Settings

LABELS = parse_labels("cat=cat|kitty,dog,car")
CONFIG = parse_label_config('<View><Image name="image" value="$image"/><RectangleLabels name="bbox" toName="image">'
                            '<Label value="cat"/><Label value="dog"/><Label value="car"/></RectangleLabels></View>')


class CountingDetector:
    """A test double around the real random-tiny detector that counts forward passes."""

    def __init__(self, detector):
        self.inner, self.calls = detector, 0
        self.model_id, self.random_weights = detector.model_id, detector.random_weights

    def detect(self, *args):
        self.calls += 1
        return self.inner.detect(*args)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 255, (90, 140, 3), dtype=np.uint8)


def test_candidates_come_from_the_same_pass_and_leave_the_shown_regions_alone(labeler, image):
    detector = CountingDetector(labeler.detector)
    plain = Labeler(detector, None, Thresholds(box_threshold=0.99, text_threshold=0.25))
    shown = plain.predict(image, LABELS, with_masks=False)
    explore = Exploration(share=0.5, max_per_task=2, floor=0.3)  # random-tiny scores lie in 0.34-1
    explored = plain.predict(image, LABELS, with_masks=False, explore=explore)
    assert detector.calls == 2, "one detector pass each"
    weight = explored.data["explore_weight"]
    n = len(shown)
    assert np.array_equal(explored.boxes_xyxy[:n], shown.boxes_xyxy) and (weight[:n] == 0).all()
    candidates = explored.select(np.arange(n, len(explored)))
    assert 1 <= len(candidates) <= 2 and (candidates.scores < 0.99).all() and (candidates.scores >= 0.3).all()
    assert (weight[n:] >= 1).all()
    again = plain.predict(image, LABELS, with_masks=False, explore=explore)
    assert np.array_equal(again.boxes_xyxy, explored.boxes_xyxy), "the same image gets the same candidates"
    assert explored.meta["model_version"] != shown.meta["model_version"]
    assert plain.model_version(LABELS, None, Exploration(0.0)) == shown.meta["model_version"], "off: as before"
    assert task_score(explored) == task_score(shown), "candidates do not make a task look uncertain"


def test_sampling_is_bounded_and_weighted_by_its_odds():
    n = 40
    regions = Regions((100, 100), ("a",), np.tile([10, 10, 20, 20], (n, 1)), np.linspace(0.01, 0.99, n), np.zeros(n))
    split = split_candidates(regions, np.array([0.5]), Exploration(0.1, 3, 0.1), seed=7)
    below = int(((regions.scores < 0.5) & (regions.scores >= 0.1)).sum())
    weight = split.data["explore_weight"]
    shown = int((regions.scores >= 0.5).sum())
    assert (weight[:shown] == 0).all() and len(split) - shown in (1, 2, 3)
    assert np.allclose(weight[shown:], below / (len(split) - shown))
    counts = [len(split_candidates(regions, np.array([0.5]), Exploration(0.05, 5, 0.1), seed=s)) - shown
              for s in range(400)]
    assert abs(np.mean(counts) - 0.05 * below) < 0.15, "the share is kept on average"
    with pytest.raises(PrelabelError, match="PRELABEL_EXPLORE_SHARE"):
        Exploration(1.5)
    assert exploration(Settings()) is None and exploration(Settings(explore_share=0.1)).share == 0.1


def test_candidates_are_flagged_in_results_and_read_back_with_their_weight():
    regions = Regions((100, 100), ("cat",), [[10, 10, 40, 40], [50, 50, 90, 90]], [0.8, 0.2], [0, 0],
                      data={"explore_weight": np.array([0.0, 6.0])})
    items = regions_to_results(score_regions(regions, [0.35]), CONFIG, review_threshold=0.5)
    assert "candidate" not in items[0]["prelabel"]
    assert items[1]["prelabel"]["candidate"] is True and items[1]["prelabel"]["explore_weight"] == 6.0
    assert items[1]["meta"]["text"][0].startswith(CANDIDATE_NOTE)
    shapes = result_shapes(items)
    assert "explore_weight" not in shapes[0].features and shapes[1].features["explore_weight"] == 6.0


def outcome(score, kept, weight=None):
    features = {"score": score} if weight is None else {"score": score, "explore_weight": weight}
    return RegionOutcome("bbox", "a", Outcome.ACCEPTED if kept else Outcome.DELETED, 0.9 if kept else None, score,
                         features)


def test_judged_candidates_let_the_validated_fit_lower_a_threshold():
    rng = np.random.default_rng(0)
    shown = [outcome(s, rng.uniform() < 0.95) for s in rng.uniform(0.7, 1.0, 200)]
    # Below the 0.7 cut: a 25% sample (weight 4) of detections that are mostly right above 0.4.
    candidates = [outcome(s, rng.uniform() < (0.85 if s > 0.4 else 0.1), 4.0) for s in rng.uniform(0.2, 0.7, 60)]
    added = [RegionOutcome("bbox", "a", Outcome.ADDED, None, None, None) for _ in range(130)]
    groups = list(range(200)) + list(range(60)) + list(range(130))
    without = fit_feedback(shown + added, {"a": 0.7}, groups=list(range(200)) + list(range(130)))
    assert without.thresholds.get("a", 0.7) >= 0.7, "nothing below the cut was judged: it cannot fall"
    learned = fit_feedback(shown + candidates + added, {"a": 0.7}, groups=groups)
    assert 0.35 < learned.thresholds["a"] < 0.7
    assert learned.metrics["validation"]["thresholds"]["a"]["applied"]
    assert learned.metrics["exploration"]["candidates"] == 60
    assert best_threshold(shown + candidates + added, current=0.7)[0] < 0.7


def test_a_family_without_a_text_threshold_shows_the_same_regions_when_exploring(image):
    # OWLv2 has no text threshold: a setting for it neither hides regions nor turns them into candidates (before
    # #34 exploration applied it to every family).
    labeler = build_labeler(Settings(detector="random-tiny-owlv2", segmenter="", device="cpu", text_threshold=0.99,
                                     box_threshold=0.0))
    plain = labeler.predict(image, LABELS, with_masks=False)
    explored = labeler.predict(image, LABELS, with_masks=False, explore=Exploration(share=1.0, max_per_task=3))
    assert len(plain) > 0 and (plain.scores < 0.99).any()
    shown = explored.select(np.flatnonzero(explored.data["explore_weight"] == 0))
    np.testing.assert_array_equal(shown.boxes_xyxy, plain.boxes_xyxy)
