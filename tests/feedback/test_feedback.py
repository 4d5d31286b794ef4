"""Matching, threshold and calibration fitting, the SQLite store, the report, and webhook validation."""

import json
import sqlite3

import numpy as np
import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.core.shapes import Shape
from prelabel.core.uncertainty import FEATURES
from prelabel.feedback.fit import Learned, best_threshold, fit_feedback
from prelabel.feedback.matching import Outcome, RegionOutcome, match_shapes
from prelabel.feedback.metrics import f_beta
from prelabel.feedback.report import build_report, format_report
from prelabel.feedback.service import FeedbackService
from prelabel.feedback.store import FeedbackStore
from prelabel.labelstudio.webhooks import WebhookError, handle_webhook


def box(label, x1, y1, x2, y2, score=None, from_name="bbox"):
    return Shape(label, np.array([x1, y1, x2, y2], dtype=np.float32), (100, 100), score=score, from_name=from_name)


def outcome(label, kind, score=None, features=None):
    return RegionOutcome("bbox", label, Outcome(kind), None, score, features)


def test_matching_classifies_every_region():
    predicted = [box("cat", 0, 0, 10, 10, 0.9), box("cat", 20, 20, 40, 40, 0.8), box("cat", 60, 60, 70, 70, 0.5),
                 box("dog", 0, 50, 10, 60, 0.7)]
    human = [box("cat", 0, 0, 10, 10), box("cat", 22, 22, 40, 40), box("cat", 80, 0, 90, 10),
             box("cat", 0, 50, 10, 60)]  # the dog was relabelled as a cat
    got = sorted((o.label, o.outcome.value, o.score) for o in match_shapes(predicted, human))
    assert got == [("cat", "accepted", 0.9), ("cat", "added", None), ("cat", "added", None),
                   ("cat", "adjusted", 0.8), ("cat", "deleted", 0.5), ("dog", "deleted", 0.7)]


def test_matching_is_one_to_one_and_optimal():
    predicted = [box("a", 0, 0, 10, 10), box("a", 2, 0, 12, 10)]
    human = [box("a", 2, 0, 12, 10)]
    outcomes = match_shapes(predicted, human)
    assert [o.outcome for o in outcomes] == [Outcome.DELETED, Outcome.ACCEPTED], "the exact match wins"


def test_best_threshold_has_the_known_answer():
    # kept at 0.45 and 0.6..0.9, deleted at 0.4, 0.5, 0.55, 0.95; one miss that no cut can recover
    outcomes = [outcome("a", "accepted", s) for s in (0.45, 0.6, 0.7, 0.8, 0.9)]
    outcomes += [outcome("a", "deleted", s) for s in (0.4, 0.5, 0.55, 0.95)]
    outcomes += [outcome("a", "added")]
    cut, score = best_threshold(outcomes, current=0.35)
    assert cut == pytest.approx(0.6)
    assert score == pytest.approx(f_beta(4, 1, 2, 1.0)) and f_beta(4, 1, 2, 1.0) == pytest.approx(8 / 11)
    recall_first, _ = best_threshold(outcomes, current=0.35, beta=4.0)
    assert recall_first == pytest.approx(0.45), "a recall-heavy F-beta keeps more boxes"
    assert best_threshold([outcome("a", "accepted", 0.4)], current=0.35)[0] == 0.35, "never below what was shown"


def signals(score):
    return {name: (score if name == "score" else 1.0 if name in ("mask_score", "box_mask_iou") else 0.0)
            for name in FEATURES}


def test_fit_needs_enough_feedback_and_learns_thresholds_and_calibration():
    with pytest.raises(PrelabelError, match="not enough feedback"):
        fit_feedback([outcome("a", "accepted", 0.9)], {"a": 0.35}, min_samples=5)
    rng = np.random.default_rng(1)
    outcomes = []
    for score in rng.uniform(0.35, 1.0, 300):
        kind = "accepted" if score > 0.7 else "deleted"
        outcomes.append(outcome("a", kind, score, signals(float(score))))
    learned = fit_feedback(outcomes, {"a": 0.35, "b": 0.35}, min_samples=20)
    assert 0.69 < learned.thresholds["a"] <= 0.72 and "b" not in learned.thresholds
    assert learned.calibration is not None and learned.metrics["ece_after"] < learned.metrics["ece_before"]
    assert Learned.from_dict(json.loads(json.dumps(learned.to_dict()))) == learned
    prompts = learned.apply([LabelPrompt("a", ("a",)), LabelPrompt("b", ("b",), 0.5)])
    assert [p.box_threshold for p in prompts] == [learned.thresholds["a"], 0.5]


def test_store_replaces_updates_deletes_and_survives_reopening(tmp_path):
    path = tmp_path / "fb.sqlite3"
    store = FeedbackStore(path)
    store.record_annotation("ANNOTATION_CREATED", "1", 10, 100, "prelabel-x", [outcome("a", "deleted", 0.4)], 3.0)
    store.record_annotation("ANNOTATION_UPDATED", "1", 10, 100, "prelabel-x",
                            [outcome("a", "accepted", 0.4, signals(0.4)), outcome("a", "added")], 5.0)
    store.record_annotation("ANNOTATION_CREATED", "2", 11, 101, "prelabel-y", [outcome("b", "accepted", 0.9)])
    reopened = FeedbackStore(path)
    got = [(s.annotation, s.region.outcome.value, s.region.features) for s in reopened.outcomes("1")]
    assert got == [(100, "accepted", signals(0.4)), (100, "added", None)], "an update replaces the annotation"
    assert reopened.event_count() == 3 and reopened.event_count("1") == 2
    assert reopened.annotations_since_last_fit("1") == 2
    reopened.save_fit("1", {"thresholds": {"a": 0.5}})
    assert reopened.latest_fit("1") == {"thresholds": {"a": 0.5}} and reopened.latest_fit("2") is None
    assert reopened.annotations_since_last_fit("1") == 0
    assert reopened.delete_annotations("ANNOTATIONS_DELETED", "1", [100, 999]) == 1
    assert reopened.outcomes("1") == [] and len(reopened.outcomes("2")) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_report_counts_and_rates(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    store.record_annotation("ANNOTATION_CREATED", "1", 1, 1, "v1",
                            [outcome("a", k) for k in ("accepted", "accepted", "adjusted", "deleted", "added")], 10)
    store.record_annotation("ANNOTATION_CREATED", "1", 2, 2, "v2", [outcome("b", "accepted")], 4)
    report = build_report(store.outcomes("1"), store.annotations("1"))
    overall = report["overall"]
    assert (overall["predicted"], overall["final"], overall["added"]) == (5, 5, 1)
    assert overall["acceptance_rate"] == 0.6 and overall["precision"] == 0.8 and overall["recall"] == 0.8
    assert report["labels"]["a"]["deleted_rate"] == 0.25 and report["labels"]["b"]["precision"] == 1.0
    assert list(report["model_versions"]) == ["v1", "v2"]
    assert report["model_versions"]["v1"]["median_lead_time_s"] == 10
    text = format_report(report)
    assert "per model_version" in text and "60.0%" in text


@pytest.mark.parametrize("payload, message", [
    ({"event": "push", "repository": {}}, "unknown action None"),
    ({"action": "opened", "project": {"id": 1}}, "unknown action 'opened'"),
    ({"action": "ANNOTATION_CREATED", "project": {"id": 1}}, "integer 'id'"),
    ({"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "task": 1, "result": "x"}, "project": {"id": 1}},
     "'result' must be a list"),
    ({"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "result": [], "task": 1}}, "no Label Studio project"),
    ({"action": "ANNOTATION_CREATED", "project": {"id": 1}, "task": "7", "annotation": {"id": 1, "result": []}},
     "task id"),
    ({"action": "ANNOTATION_CREATED", "project": {"id": 1},
      "annotation": {"id": 1, "task": 1, "result": [{"type": "rectanglelabels", "value": {}}],
                     "prediction": {"model_version": "prelabel-1", "result": []}}}, "is malformed"),
])
def test_malformed_or_foreign_webhooks_are_rejected_and_store_nothing(tmp_path, payload, message):
    service = FeedbackService(FeedbackStore(tmp_path / "fb.sqlite3"))
    with pytest.raises(WebhookError, match=message):
        handle_webhook(service, payload)
    assert service.store.event_count() == 0


def test_annotations_of_other_models_or_without_prediction_are_ignored(tmp_path):
    service = FeedbackService(FeedbackStore(tmp_path / "fb.sqlite3"))
    base = {"action": "ANNOTATION_CREATED", "project": {"id": 1}, "annotation": {"id": 1, "task": 1, "result": []}}
    assert "did not start from a prediction" in handle_webhook(service, base)["reason"]
    foreign = {**base, "annotation": {**base["annotation"], "prediction": {"model_version": "dummy", "result": []}}}
    assert "another model" in handle_webhook(service, foreign)["reason"]
    assert service.store.event_count() == 0
