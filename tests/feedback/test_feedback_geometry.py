"""Learning each label's systematic box error from adjusted regions, validated, stored, and applied."""

import sqlite3

import numpy as np

from prelabel.core.regions import Regions
from prelabel.core.shapes import Shape
from prelabel.feedback.fit import Learned
from prelabel.feedback.geometry_correction import BoxCorrection, LearnedScoring, box_deltas, fit_box_correction
from prelabel.feedback.matching import Outcome, RegionOutcome, match_shapes
from prelabel.feedback.store import FeedbackStore


def matched(label, predicted, final, outcome=Outcome.ADJUSTED):
    return RegionOutcome("bbox", label, outcome, 0.8, 0.9, None, tuple(predicted), tuple(final))


def test_box_deltas_and_correction_invert_each_other():
    predicted = np.array([[0.1, 0.1, 0.3, 0.2], [0.5, 0.4, 0.9, 0.9]])
    final = np.array([[0.12, 0.08, 0.36, 0.22], [0.45, 0.35, 0.95, 0.95]])
    for p, f, d in zip(predicted, final, box_deltas(predicted, final)):
        assert np.allclose(BoxCorrection({"a": tuple(d)}).apply_boxes(p[None], ["a"])[0], f)
    assert np.allclose(BoxCorrection({"a": (0.1, 0, 0, 0)}).apply_boxes(predicted, ["b", "b"]), predicted)


def test_a_systematic_error_is_learned_and_noise_is_not():
    rng = np.random.default_rng(0)
    truth = np.c_[rng.uniform(0, 0.5, (60, 2)), np.zeros((60, 2))]
    truth[:, 2:] = truth[:, :2] + rng.uniform(0.1, 0.3, (60, 2))
    tight = BoxCorrection({"x": (-0.05, 0.0, np.log(0.8), np.log(0.9))}).apply_boxes(truth, ["x"] * 60)
    noisy = truth + rng.normal(0, 0.01, truth.shape)
    outcomes = [matched("crack", p, f) for p, f in zip(tight + rng.normal(0, 0.003, truth.shape), truth)]
    outcomes += [matched("rivet", p, f) for p, f in zip(noisy, truth)]
    correction, report = fit_box_correction(outcomes, [i // 5 for i in range(120)], min_samples=20)
    assert set(correction.labels) == {"crack"} and report["crack"]["applied"] and not report["rivet"]["applied"]
    dx, dy, sw, sh = correction.labels["crack"]
    assert abs(sw - np.log(1 / 0.8)) < 0.03 and abs(sh - np.log(1 / 0.9)) < 0.03 and dx > 0.03
    gain = report["crack"]["held_out_mean_iou"]
    assert gain["corrected"] > gain["uncorrected"] + 0.1
    few, report = fit_box_correction(outcomes[:10], list(range(10)), min_samples=20)
    assert few is None and "fewer than 20" in report["crack"]["reason"]


def test_matching_keeps_boxes_and_the_store_round_trips_them_and_migrates(tmp_path):
    def box(x1, y1, x2, y2):
        return Shape("a", np.array([x1, y1, x2, y2], dtype=np.float32), (100, 50), score=0.9, from_name="bbox")

    outcomes = match_shapes([box(10, 10, 30, 30), box(60, 0, 70, 10)], [box(12, 10, 32, 30)])
    adjusted = next(o for o in outcomes if o.outcome is Outcome.ADJUSTED)
    assert adjusted.predicted_box == (0.1, 0.2, 0.3, 0.6) and adjusted.final_box == (0.12, 0.2, 0.32, 0.6)
    assert next(o for o in outcomes if o.outcome is Outcome.DELETED).predicted_box is None
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # a store from before boxes were kept
        db.executescript("""CREATE TABLE annotations (project TEXT NOT NULL, annotation INTEGER NOT NULL,
            task INTEGER NOT NULL, model_version TEXT NOT NULL, lead_time REAL, updated_at REAL NOT NULL,
            PRIMARY KEY (project, annotation));
            CREATE TABLE regions (project TEXT NOT NULL, annotation INTEGER NOT NULL, from_name TEXT NOT NULL,
            label TEXT NOT NULL, outcome TEXT NOT NULL, iou REAL, score REAL, features TEXT);
            INSERT INTO annotations VALUES ('1', 5, 5, 'prelabel-old', NULL, 1.0);
            INSERT INTO regions VALUES ('1', 5, 'bbox', 'a', 'deleted', NULL, 0.4, NULL);""")
    store = FeedbackStore(path)
    store.record_annotation("ANNOTATION_CREATED", "1", 6, 6, "prelabel-new", outcomes)
    got = store.outcomes("1")
    assert [o.region.outcome for o in got][:1] == [Outcome.DELETED], "the old rows are still there"
    assert next(o.region for o in got if o.region.outcome is Outcome.ADJUSTED) == adjusted


def test_the_correction_is_part_of_the_fit_model_version_and_prediction():
    from prelabel.core.model_version import model_version

    correction = BoxCorrection({"a": (0.1, 0.0, 0.2, 0.0)})
    learned = Learned({}, None, {}, correction)
    assert Learned.from_dict(learned.to_dict()) == learned
    assert Learned({}, None).scoring() is None, "no correction: the predictor gets the calibration as before"
    scoring = learned.scoring()
    assert isinstance(scoring, LearnedScoring)
    version = lambda scoring: model_version({"detector": "d"}, [], {}, False,  # noqa: E731
                                            {"calibration": scoring.to_dict()} if scoring else None)
    assert version(scoring) != version(None)
    regions = Regions((100, 100), ("a", "b"), np.array([[10, 10, 30, 30], [10, 10, 30, 30]], np.float32),
                      np.array([0.9, 0.9]), np.array([0, 1]))
    boxes = scoring.correct_boxes(regions).boxes_xyxy
    assert boxes[1].tolist() == [10, 10, 30, 30] and boxes[0][2] - boxes[0][0] > 20 and boxes[0][0] > 8


def test_the_labeler_predicts_with_corrected_boxes(labeler):
    from prelabel.core.labels import LabelPrompt

    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    prompts = [LabelPrompt("cat", ("cat",)), LabelPrompt("dog", ("dog",))]
    plain = labeler.predict(image, prompts, with_masks=False)
    scoring = Learned({}, None, {}, BoxCorrection({"cat": (0.0, 0.0, np.log(0.5), np.log(0.5))})).scoring()
    corrected = labeler.predict(image, prompts, with_masks=False, calibration=scoring)
    cats = plain.label_ids == 0
    assert cats.any() and (~cats).any()
    width = lambda r: r.boxes_xyxy[:, 2] - r.boxes_xyxy[:, 0]  # noqa: E731
    assert np.allclose(width(corrected)[cats], width(plain)[cats] / 2, atol=1e-3)
    assert np.allclose(corrected.boxes_xyxy[~cats], plain.boxes_xyxy[~cats])
    assert corrected.meta["model_version"] != plain.meta["model_version"]
