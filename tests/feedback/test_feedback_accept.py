"""Automated labeling at a target precision: the Clopper-Pearson cut, the webhook guard, and a real Label Studio."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from prelabel.core.uncertainty import FEATURES
from prelabel.feedback.accept import choose_cut, clopper_pearson_lower
from prelabel.feedback.fit import Learned
from prelabel.feedback.matching import Outcome, RegionOutcome
from prelabel.feedback.service import FeedbackService
from prelabel.feedback.store import FeedbackStore
from prelabel.feedback.validation import MonotoneCalibration
from prelabel.labelstudio.accept import MACHINE_NOTE, accept_project, is_machine_accepted
from prelabel.labelstudio.webhooks import handle_webhook


def test_clopper_pearson_has_the_known_answers():
    # n successes out of n: the one-sided 95% lower bound is 0.05 ** (1 / n) (the "rule of three" family)
    assert clopper_pearson_lower(59, 59) == pytest.approx(0.05 ** (1 / 59)) and clopper_pearson_lower(59, 59) > 0.95
    assert clopper_pearson_lower(58, 58) < 0.95, "58 of 58 is not yet enough evidence for 95%"
    assert clopper_pearson_lower(0, 10) == 0.0 and clopper_pearson_lower(0, 0) == 0.0
    assert clopper_pearson_lower(90, 100) < 0.9 < clopper_pearson_lower(96, 100) + 0.06


def test_the_cut_is_the_lowest_whose_lower_bound_meets_the_target():
    confidence = np.r_[np.linspace(0.99, 0.80, 100), np.linspace(0.79, 0.3, 100)]
    correct = np.r_[np.ones(100, bool), np.arange(100) % 2 == 0]
    cut = choose_cut(confidence, correct, 0.95)
    assert (cut.above, cut.kept_above) == (103, 102) and cut.precision_lower_bound >= 0.95
    assert clopper_pearson_lower(102, 104) < 0.95, "one more region and the bound would fail"
    assert cut.cut == pytest.approx(confidence[102], abs=1e-6)
    # the point estimate would be fooled by 20 correct of 20; the bound is not
    assert choose_cut(confidence[:20], correct[:20], 0.95).cut is None
    strict = choose_cut(confidence, correct, 0.99)
    assert strict.cut is None or strict.cut > cut.cut
    assert cut.to_dict()["estimated_error_rate"] == pytest.approx(1 / 103, abs=1e-4)
    assert cut.to_dict()["error_rate_upper_bound"] <= 0.05


def signals(score):
    return {name: (score if name == "score" else 1.0 if name in ("mask_score", "box_mask_iou") else 0.0)
            for name in FEATURES}


def test_service_cut_uses_held_out_confidence_of_the_current_fit(tmp_path):
    from prelabel.core.labels import LabelPrompt
    from prelabel.core.uncertainty import confidence_of

    store = FeedbackStore(tmp_path / "fb.sqlite3")
    rng = np.random.default_rng(0)
    for annotation in range(120):
        scores = rng.uniform(0.35, 1.0, 2)
        store.record_annotation("ANNOTATION_CREATED", "1", annotation, annotation, "prelabel-x", [
            RegionOutcome("bbox", "a", Outcome.ACCEPTED if rng.uniform() < (s - 0.35) / 0.35 else Outcome.DELETED,
                          0.97, s, signals(float(s))) for s in scores])
    service = FeedbackService(store)
    heuristic_cut = service.precision_cut("1", 0.9)
    learned = service.fit("1", [LabelPrompt("a", ("a",))], 0.35)
    assert isinstance(learned.calibration, MonotoneCalibration)
    cut = service.precision_cut("1", 0.9)
    assert cut.cut is not None and cut.precision_lower_bound >= 0.9 and cut.regions == 240
    assert cut.cut != heuristic_cut.cut, "the cut is on the fitted calibration's scale"
    # judged as it is used: the tasks whose least confident region (fitted confidence) clears the cut
    features = np.array([[o.region.features[n] for n in FEATURES] for o in store.outcomes("1")])
    kept = np.array([o.region.kept for o in store.outcomes("1")]).reshape(120, 2)
    task_min = confidence_of(learned.calibration, features).reshape(120, 2).min(axis=1)
    accepted = task_min >= cut.cut - 0.02  # held-out and in-sample confidences differ a little
    assert accepted.sum() >= 10 and kept[accepted].mean() >= 0.9
    assert cut.above % 2 == 0 and cut.above >= 20, "whole tasks (two regions each) are accepted"


def test_machine_accepted_annotations_are_not_feedback(tmp_path):
    service = FeedbackService(FeedbackStore(tmp_path / "fb.sqlite3"))
    item = {"from_name": "bbox", "to_name": "image", "type": "rectanglelabels", "original_width": 10,
            "original_height": 10, "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["a"]}}
    machine = [{**item, "prelabel": {"machine_accepted": True}}]
    assert is_machine_accepted(machine) and not is_machine_accepted([item]) and not is_machine_accepted([])
    body = {"action": "ANNOTATION_CREATED", "project": {"id": 1},
            "annotation": {"id": 1, "task": 1, "result": machine,
                           "prediction": {"model_version": "prelabel-x", "result": [item]}}}
    assert "machine-accepted" in handle_webhook(service, body)["reason"] and service.store.event_count() == 0


class FakeAPI:
    """A test double of LabelStudioClient holding tasks in memory (the e2e test below uses the real one)."""

    def __init__(self, tasks):
        self.tasks_, self.calls = tasks, []

    def tasks(self, project):
        return self.tasks_

    def call(self, method, path, json=None):
        self.calls.append((method, path))
        task = int(path.split("/")[3])
        next(t for t in self.tasks_ if t["id"] == task)["annotations"].append({"id": len(self.calls), **json})

    def save_view(self, project, title, data):
        return 1


def prediction_of(scores, version="prelabel-x"):
    return {"id": 1, "model_version": version, "result": [
        {"from_name": "bbox", "to_name": "image", "type": "rectanglelabels", "score": s,
         "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["a"]},
         "prelabel": {"region": i, "features": signals(s)}} for i, s in enumerate(scores)]}


def test_accept_takes_tasks_whose_every_region_clears_the_cut_and_is_idempotent():
    tasks = [{"id": i, "annotations": [], "predictions": [prediction_of(scores)]}
             for i, scores in enumerate([[0.95, 0.9], [0.95, 0.5], [0.7], [], [0.99]])]
    tasks[3]["predictions"] = []
    tasks.append({"id": 9, "annotations": [{"id": 1, "result": []}], "total_annotations": 1,
                  "predictions": [prediction_of([0.99])]})
    api = FakeAPI(tasks)
    cut = choose_cut(np.r_[np.full(80, 0.9), np.full(20, 0.5)], np.r_[np.ones(80, bool), np.zeros(20, bool)], 0.95)
    assert cut.cut == pytest.approx(0.9)
    result = accept_project(api, 1, cut, None)
    assert result["accepted_tasks"] == [0, 4] and result["to_review"] == [1, 2], "most uncertain first"
    assert result["already_annotated"] == 1 and result["without_prediction"] == 1
    made = tasks[0]["annotations"][0]["result"]
    assert is_machine_accepted(made) and MACHINE_NOTE in made[0]["meta"]["text"][0] and "score" not in made[0]
    for task in tasks:
        task["total_annotations"] = len(task["annotations"])
    again = accept_project(api, 1, cut, None)
    assert again["accepted"] == 0 and len(api.calls) == 2, "a second run changes nothing"
    calibrated = accept_project(FakeAPI([{"id": 0, "annotations": [], "predictions": [prediction_of([0.95])]}]), 1,
                                cut, MonotoneCalibration(1.0, -3.0))
    assert calibrated["accepted"] == 0, "the cut is on the current calibration's scale, not the stored score"


@pytest.mark.e2e
def test_prelabel_accept_in_a_real_label_studio(label_studio, tmp_path):
    """Predictions stored in Label Studio, a feedback store and a fit: ``prelabel accept`` annotates the
    safe tasks (and only those), saves the review tab, and a second run changes nothing; --undo reverts."""
    from prelabel.labelstudio.client import LabelStudioClient

    api = LabelStudioClient(label_studio.url, label_studio.token)
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="bbox" toName="image">'
              '<Label value="a"/></RectangleLabels></View>')
    project = api.create_project("accept", config)
    api.call("POST", f"/api/projects/{project}/import",
             json=[{"image": f"http://127.0.0.1:1/{i}.png"} for i in range(5)])
    ids = [t["id"] for t in api.tasks(project)]
    per_task = [[0.97, 0.95], [0.96], [0.97, 0.55], [0.6], [0.99]]
    for task, scores in zip(ids, per_task):
        body = prediction_of(scores, "prelabel-e2e")
        for item in body["result"]:
            item.update(original_width=10, original_height=10)
        api.call("POST", "/api/predictions", json={"task": task, "model_version": "prelabel-e2e",
                                                   "score": min(scores), "result": body["result"]})
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    rng = np.random.default_rng(1)
    for annotation in range(80):  # feedback: regions above 0.9 are kept, those below mostly deleted
        scores = rng.uniform(0.9, 1.0, 2) if annotation % 2 else rng.uniform(0.4, 0.9, 2)
        store.record_annotation("ANNOTATION_CREATED", str(project), 1000 + annotation, annotation, "prelabel-e2e", [
            RegionOutcome("bbox", "a", Outcome.ACCEPTED if s > 0.9 or rng.uniform() < 0.2 else Outcome.DELETED,
                          0.97, s, signals(float(s))) for s in scores])
    store.save_fit(str(project), Learned({}, None).to_dict())
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "PRELABEL_FEEDBACK_DB": str(db)}

    def accept(*extra):
        out = subprocess.run([sys.executable, "-m", "prelabel.cli", "accept", "--project", str(project),
                              "--precision", "0.9", *extra], capture_output=True, text=True, env={
                                  **os.environ, **env}, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    first = accept()
    assert first["cut"] is not None and 0.6 < first["cut"] <= 0.95 and first["precision_lower_bound"] >= 0.9
    accepted = {ids[i] for i in (0, 1, 4)}
    assert set(first["accepted_tasks"]) == accepted and first["to_review"] == [ids[2], ids[3]]
    tasks = {t["id"]: t for t in api.tasks(project)}
    for task in ids:
        annotations = tasks[task]["annotations"]
        assert len(annotations) == (task in accepted)
        if annotations:
            assert is_machine_accepted(annotations[0]["result"]), "Label Studio keeps the machine-accepted mark"
    review = [t["id"] for t in api.tasks(project, view=first["review_view"])]
    assert review == [ids[2], ids[3]], "the tab shows the rest, most uncertain first"

    second = accept()
    assert second["accepted"] == 0 and second["already_annotated"] == 3 and second["review_view"] == first[
        "review_view"]
    assert sum(t["total_annotations"] for t in api.tasks(project)) == 3, "a second run changes nothing"
    undone = subprocess.run([sys.executable, "-m", "prelabel.cli", "accept", "--project", str(project), "--undo"],
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert json.loads(undone.stdout)["removed"] == 3
    assert sum(t["total_annotations"] for t in api.tasks(project)) == 0
