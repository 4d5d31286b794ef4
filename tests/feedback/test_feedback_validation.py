"""Validated fits: a calibration or threshold is applied only when held-out feedback shows it is better."""

import numpy as np
import pytest
from image_host import ImageHost, write_random_images

from prelabel.core.uncertainty import FEATURES, Calibration, heuristic_confidence
from prelabel.feedback.fit import Learned, fit_feedback
from prelabel.feedback.matching import Outcome, RegionOutcome
from prelabel.feedback.validation import AUC_TOLERANCE, MonotoneCalibration, auc, fold_of, folds, validate_calibration
from prelabel.labelstudio.backend import create_app
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/><Label value="dog"/></RectangleLabels></View>"""


def rows(**columns):
    """A feature matrix with neutral signals except the given columns."""
    n = len(next(iter(columns.values())))
    base = {"score": 0.9, "margin": 0.5, "mask_score": 1.0, "box_mask_iou": 1.0, "cross_label_iou": 0.0,
            "sqrt_area": 0.1}
    return np.stack([np.asarray(columns.get(name, np.full(n, base[name])), dtype=np.float64) for name in FEATURES],
                    axis=1)


def test_folds_are_deterministic_grouped_and_round_robin():
    groups = [7, 7, 3, 3, 9, 1, 1, 5, 8, 2]
    fold, k = fold_of(groups)
    assert k == 5 and fold == {7: 0, 3: 1, 9: 2, 1: 3, 5: 4, 8: 0, 2: 1}
    masks = folds(groups)
    assert sum(m.sum() for m in masks) == len(groups) and not (masks[0] & masks[1]).any()
    assert folds([1, 1, 1]) == [], "one annotation cannot be held out"


def test_auc_counts_ties_half():
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auc(np.full(4, 0.5), np.array([0, 1, 0, 1])) == 0.5
    assert auc(np.array([0.9, 0.8]), np.array([1, 1])) is None


def test_degenerate_feedback_is_refused_and_the_current_confidence_stays():
    """Signals that are constant up to noise and kept half of the time: the multi-signal fit is flat
    (every region 0.5), which ranks nothing, so it is refused; the heuristic keeps its order."""
    rng = np.random.default_rng(0)
    n = 60
    features = rows(score=1 - rng.uniform(0, 1e-4, n), cross_label_iou=rng.choice([0.0, 0.0, 0.0, 0.2], n))
    kept = np.tile([True, False], n // 2)
    groups = np.repeat(np.arange(6), 10)
    flat = Calibration.fit(features, kept)
    assert np.ptp(flat.confidence(features)) < 0.01, "the unchecked fit gives (nearly) one score to everything"
    model, report = validate_calibration(features, kept, groups, None)
    assert model is None and report["decision"] == "kept current"
    assert "refused" in report["multi_signal"]["verdict"] and "refused" in report["monotone"]["verdict"]
    assert report["current"]["auc"] is not None and {"log_loss", "auc", "ece"} <= set(report["multi_signal"])


def test_a_fit_that_would_lower_held_out_auc_is_refused():
    """The detector score carries the signal; in 10 small, noisy annotations the multi-signal model also
    leans on box size (pure noise here), which ranks held-out regions worse: refused, the current stays."""
    rng = np.random.default_rng(3)
    n = 40
    score = rng.uniform(0.4, 1.0, n)
    kept = rng.uniform(size=n) < score
    area = rng.uniform(0, 1, n)
    area[:8] = np.where(kept[:8], 0.9, 0.05)  # two annotations where size happened to match the outcome
    features = rows(score=score, sqrt_area=area)
    current = MonotoneCalibration(1.0, 0.0)  # the heuristic's numbers
    unchecked = Calibration.fit(features, kept)
    assert unchecked.coef[FEATURES.index("sqrt_area")] > 0.5, "the unchecked fit trusts the spurious signal"
    model, report = validate_calibration(features, kept, np.repeat(np.arange(10), 4), current)
    assert model is current and report["decision"] == "kept current"
    multi = report["multi_signal"]
    assert multi["auc"] < report["current"]["auc"] - AUC_TOLERANCE and "AUC" in multi["verdict"]


def test_monotone_calibration_is_preferred_and_keeps_the_order():
    rng = np.random.default_rng(1)
    n = 300
    score = rng.uniform(0.35, 1.0, n)
    kept = rng.uniform(size=n) < (score - 0.35) / 0.65  # over-confident: heuristic = score
    features = rows(score=score)
    model, report = validate_calibration(features, kept, np.repeat(np.arange(30), 10), None)
    assert isinstance(model, MonotoneCalibration) and report["decision"] == "applied monotone"
    assert report["monotone"]["log_loss"] < report["current"]["log_loss"]
    before, after = heuristic_confidence(features), model.confidence(features)
    assert (np.argsort(before, kind="stable") == np.argsort(after, kind="stable")).all(), "monotone"
    assert MonotoneCalibration.from_dict(model.to_dict()) == model


def test_multi_signal_model_wins_only_when_it_ranks_measurably_better():
    rng = np.random.default_rng(2)
    n = 400
    area = rng.uniform(0, 0.5, n)
    kept = rng.uniform(size=n) < np.where(area > 0.1, 0.9, 0.15)  # size decides, the detector score does not
    features = rows(score=rng.uniform(0.4, 1.0, n), sqrt_area=area)
    model, report = validate_calibration(features, kept, np.repeat(np.arange(40), 10), None)
    assert isinstance(model, Calibration) and report["decision"] == "applied multi_signal"
    assert report["multi_signal"]["auc"] >= report["monotone"]["auc"] + 0.02


def outcome(kind, score):
    features = {name: (score if name == "score" else 1.0 if name in ("mask_score", "box_mask_iou") else 0.0)
                for name in FEATURES}
    return RegionOutcome("bbox", "a", Outcome(kind), None, score, features)


def test_thresholds_move_only_where_held_out_f_beta_improves():
    rng = np.random.default_rng(3)
    random_keep = [outcome("accepted" if rng.uniform() < 0.5 else "deleted", float(s))
                   for s in rng.uniform(0.35, 1.0, 100)]
    learned = fit_feedback(random_keep, {"a": 0.35}, beta=0.5, min_samples=20, groups=np.repeat(np.arange(10), 10))
    report = learned.metrics["validation"]["thresholds"]["a"]
    assert "a" not in learned.thresholds and not report["applied"], report
    assert report["fitted"] > 0.5, "the in-sample best cut is noise: it does not hold out, so it is refused"
    assert report["held_out_f0.5"]["fitted"] < report["held_out_f0.5"]["current"]
    rng = np.random.default_rng(4)
    clear = [outcome("accepted" if s > 0.7 else "deleted", float(s)) for s in rng.uniform(0.35, 1.0, 200)]
    learned = fit_feedback(clear, {"a": 0.35}, min_samples=20, groups=np.repeat(np.arange(20), 10))
    report = learned.metrics["validation"]["thresholds"]["a"]
    assert report["applied"] and 0.69 < learned.thresholds["a"] <= 0.72
    assert report["held_out_f1"]["fitted"] > report["held_out_f1"]["current"]


def test_a_refused_fit_keeps_the_previous_fit():
    """Feedback with no signal at all (one score, kept half the time): nothing validates, the previous
    fit's thresholds and calibration stay, and the model_version with them."""
    previous = Learned({"a": 0.6}, MonotoneCalibration(2.0, -1.0))
    noise = [outcome("accepted" if i % 2 else "deleted", 0.8) for i in range(60)]
    learned = fit_feedback(noise, {"a": 0.6}, min_samples=20, groups=np.repeat(np.arange(6), 10),
                           current=previous, floors={"a": 0.35})
    assert learned.thresholds == {"a": 0.6} and learned.calibration == previous.calibration
    validation = learned.metrics["validation"]
    assert validation["calibration"]["decision"] == "kept current"
    assert validation["calibration"]["current_kind"] == "monotone"
    assert not validation["thresholds"]["a"]["applied"]
    assert Learned.from_dict(learned.to_dict()).calibration == learned.calibration


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    images = write_random_images(tmp_path_factory.mktemp("images"), {f"{i}.png": (48, 64) for i in range(6)}, seed=3)
    with ImageHost(images) as server:
        yield server


def test_six_annotations_keeping_half_of_each_task_keep_the_task_order(host, tmp_path):
    """The issue's case: random weights, 6 annotations that each keep half of the task's regions, then
    Start training. The unchecked fit made every score 0.50 (all tasks tied); the validated one must not."""
    labeler = build_labeler(Settings(detector="random-tiny", segmenter="random-tiny", device="cpu", box_threshold=0.3,
                                     max_detections=12))
    settings = Settings(detector="random-tiny", segmenter="random-tiny", box_threshold=0.3, label_studio_url=host.url,
                        label_studio_api_key=host.token, feedback_db=str(tmp_path / "fb.sqlite3"))
    client = create_app(settings, labeler).test_client()
    tasks = [{"id": i, "data": {"image": f"/data/upload/{i}.png"}} for i in range(6)]
    body = {"tasks": tasks, "label_config": CONFIG, "project": "3.1"}
    before = client.post("/predict", json=body).get_json()["results"]
    for task, prediction in zip(tasks, before):
        items = prediction["result"]
        kept = [{k: v for k, v in r.items() if k not in ("score", "prelabel")} for r in items[::2]]  # half
        reply = client.post("/webhook", json={
            "action": "ANNOTATION_CREATED", "project": {"id": 3, "label_config": CONFIG},
            "annotation": {"id": 50 + task["id"], "task": task["id"], "result": kept, "prediction": prediction}})
        assert reply.get_json()["status"] == "stored"
    # The unchecked fit of these 6 annotations: about 0.50 for every region, whatever its signals.
    from prelabel.feedback.fit import feature_matrix
    from prelabel.feedback.store import FeedbackStore

    stored = FeedbackStore(settings.feedback_db).outcomes("3")
    features = feature_matrix([o.region for o in stored])
    flat = Calibration.fit(features, np.array([o.region.kept for o in stored]))
    assert np.abs(flat.confidence(features) - 0.5).max() < 0.05

    trained = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 3, "label_config": CONFIG}})
    answer = trained.get_json()
    validation = answer["metrics"]["validation"]["calibration"]
    assert {"log_loss", "auc", "ece"} <= set(validation["current"]), "the held-out figures that decided it"
    assert {"log_loss", "auc"} <= set(validation["multi_signal"]) and "refused" in validation["multi_signal"]["verdict"]
    after = client.post("/predict", json=body).get_json()["results"]
    scores_after = [p["score"] for p in after]
    assert len(set(scores_after)) == len(after), "no two tasks tie (the unchecked fit tied them all at 0.50)"
    # The validated thresholds may drop regions; the tasks' order is then the heuristic's order of what is
    # left (the monotone calibration keeps it, and nothing that ranks better was validated).
    heuristic = [float(heuristic_confidence(np.array([[r["prelabel"]["features"][n] for n in FEATURES]
                                                      for r in p["result"]])).min()) for p in after]
    assert np.argsort(scores_after).tolist() == np.argsort(heuristic).tolist()
    assert validation["decision"] in ("kept current", "applied monotone"), validation
    assert validation["multi_signal"]["auc"] < validation["current"]["auc"] - AUC_TOLERANCE
