"""Learn from feedback: per-label box thresholds that maximise F-beta, and a confidence calibration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.core.scoring import Scoring
from prelabel.core.uncertainty import EXPLORE_WEIGHT, FEATURES, confidence_of
from prelabel.feedback.geometry_correction import BoxCorrection, LearnedScoring, fit_box_correction
from prelabel.feedback.matching import Outcome, RegionOutcome
from prelabel.feedback.metrics import expected_calibration_error, search_cut
from prelabel.feedback.validation import calibration_from_dict, validate_calibration, validate_threshold


@dataclass(frozen=True)
class Learned:
    """What a fit produced; the server predicts with it and reports a new ``model_version``."""

    thresholds: dict[str, float]
    calibration: Scoring | None  # a Calibration or MonotoneCalibration (no box correction of its own)
    metrics: dict[str, Any] = field(default_factory=dict)
    box_correction: BoxCorrection | None = None  # per-label systematic box error learned from adjustments

    def apply(self, prompts: Sequence[LabelPrompt]) -> tuple[LabelPrompt, ...]:
        """The prompts with learned box thresholds for the labels that have one."""
        return tuple(replace(p, box_threshold=self.thresholds[p.name]) if p.name in self.thresholds else p
                     for p in prompts)

    def scoring(self) -> Scoring | None:
        """What the Labeler predicts with (its ``calibration`` argument): the calibration, or with a box
        correction a :class:`~prelabel.feedback.geometry_correction.LearnedScoring` carrying both."""
        if self.box_correction is None:
            return self.calibration
        return LearnedScoring(self.calibration, self.box_correction)

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds,
                "calibration": self.calibration.to_dict() if self.calibration else None,
                "box_correction": self.box_correction.to_dict() if self.box_correction else None,
                "metrics": self.metrics}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Learned:
        calibration, boxes = data.get("calibration"), data.get("box_correction")
        return cls({str(k): float(v) for k, v in data.get("thresholds", {}).items()},
                   calibration_from_dict(calibration) if calibration else None, dict(data.get("metrics", {})),
                   BoxCorrection.from_dict(boxes) if boxes else None)



class NotEnoughFeedback(PrelabelError):
    """Too few judged regions to fit anything: not an error state, the project keeps its current fit."""


def best_threshold(outcomes: Sequence[RegionOutcome], current: float, beta: float = 1.0) -> tuple[float, float]:
    """The detector-score cut that maximises F-beta on one label's outcomes, and that F-beta.

    Kept regions are true positives, deleted ones false positives, added ones misses that no cut can
    recover. Only regions that were shown can be judged, so the cut never goes below ``current``, except
    down to the lowest judged exploration candidate (a below-threshold detection shown to be judged,
    weighted by its inverse chance of being shown).
    """
    predicted = [o for o in outcomes if o.outcome is not Outcome.ADDED]
    scores = np.array([detector_score(o) for o in predicted])
    kept = np.array([o.kept for o in predicted], dtype=bool)
    floor = min([current, *(detector_score(o) for o in predicted if is_candidate(o))])
    return search_cut(scores, kept, sum(o.outcome is Outcome.ADDED for o in outcomes), floor, beta,
                      np.array([explore_weight(o) for o in predicted]))


def is_candidate(outcome: RegionOutcome) -> bool:
    """Whether the region was an exploration candidate (shown below its label's threshold)."""
    return bool(outcome.features) and EXPLORE_WEIGHT in outcome.features


def explore_weight(outcome: RegionOutcome) -> float:
    """A judged region's inverse chance of having been shown: 1, or a candidate's ``n / m``."""
    return float(outcome.features[EXPLORE_WEIGHT]) if is_candidate(outcome) else 1.0


def exploration_report(outcomes: Sequence[RegionOutcome]) -> dict[str, Any]:
    """What exploration cost and found: candidates judged, the extra regions they are per shown region, and
    how many annotators kept (overall and per label)."""
    predicted = [o for o in outcomes if o.outcome is not Outcome.ADDED]
    candidates = [o for o in predicted if is_candidate(o)]
    shown = len(predicted) - len(candidates)
    per_label = {}
    for label in sorted({o.label for o in candidates}):
        mine = [o for o in candidates if o.label == label]
        per_label[label] = {"candidates": len(mine), "kept": sum(o.kept for o in mine)}
    return {"candidates": len(candidates), "shown": shown,
            "extra_regions": round(len(candidates) / shown, 4) if shown else None,
            "kept": sum(o.kept for o in candidates),
            "kept_share": round(sum(o.kept for o in candidates) / len(candidates), 4) if candidates else None,
            "labels": per_label}


def detector_score(outcome: RegionOutcome) -> float:
    """The detector's score of a predicted region (its shown confidence when prelabel's signals are absent)."""
    if outcome.features and "score" in outcome.features:
        return float(outcome.features["score"])
    return float(outcome.score or 0.0)


def feature_matrix(outcomes: Sequence[RegionOutcome]) -> np.ndarray:
    """``(N, len(FEATURES))`` of regions that carry all of prelabel's signals."""
    return np.array([[o.features[name] for name in FEATURES] for o in outcomes], dtype=np.float64).reshape(
        -1, len(FEATURES))


def fit_feedback(
    outcomes: Sequence[RegionOutcome],
    current_thresholds: Mapping[str, float],
    beta: float = 1.0,
    min_samples: int = 20,
    groups: Sequence[Any] | None = None,
    current: Learned | None = None,
    floors: Mapping[str, float] | None = None,
) -> Learned:
    """Validated per-label thresholds and calibration (see :mod:`prelabel.feedback.validation`).

    ``current_thresholds``: the cuts predictions use now; ``floors``: the lowest cut that was shown
    (default: the current ones); ``groups``: each outcome's annotation (default: every region its own),
    so held-out folds keep an annotation together; ``current``: the fit predictions use now (None: the
    heuristic), which stays wherever a new fit does not beat it on held-out feedback.
    Raises ValueError when there is too little feedback to learn anything.
    """
    groups = list(range(len(outcomes))) if groups is None else list(groups)
    floors = floors or current_thresholds
    thresholds = {k: v for k, v in (current.thresholds if current else {}).items() if k in current_thresholds}
    per_label, threshold_reports = {}, {}
    for label in sorted({o.label for o in outcomes}):
        mine = [(o, g) for o, g in zip(outcomes, groups) if o.label == label]
        shown = [(o, g) for o, g in mine if o.outcome is not Outcome.ADDED]
        if len(shown) < min_samples or label not in current_thresholds:
            continue
        now = current_thresholds[label]
        # The lowest cut judged: what was shown, or lower where exploration candidates were judged.
        floor = min([floors.get(label, now), now, *(detector_score(o) for o, _ in shown if is_candidate(o))])
        cut, report = validate_threshold(
            np.array([detector_score(o) for o, _ in shown]), np.array([o.kept for o, _ in shown], dtype=bool),
            [g for _, g in shown], [g for o, g in mine if o.outcome is Outcome.ADDED],
            floor, now, beta, np.array([explore_weight(o) for o, _ in shown]))
        if report["applied"]:
            thresholds[label] = round(cut, 4)
        threshold_reports[label] = report
        _, score = best_threshold([o for o, _ in mine], thresholds.get(label, current_thresholds[label]), beta)
        per_label[label] = {"threshold": thresholds.get(label, round(current_thresholds[label], 4)),
                            f"f{beta:g}": round(score, 4), "judged": len(shown)}
    with_signals = [(o, g) for o, g in zip(outcomes, groups) if o.outcome is not Outcome.ADDED and o.features
                    and all(name in o.features for name in FEATURES)]
    calibration = current.calibration if current else None
    metrics: dict[str, Any] = {"labels": per_label, "regions": len(with_signals)}
    validation: dict[str, Any] = {"thresholds": threshold_reports}
    fitted_calibration = False
    if len(with_signals) >= min_samples:
        features = feature_matrix([o for o, _ in with_signals])
        kept = np.array([o.kept for o, _ in with_signals])
        before = calibration
        calibration, validation["calibration"] = validate_calibration(
            features, kept, [g for _, g in with_signals], before)
        fitted_calibration = True
        metrics["ece_before"] = round(expected_calibration_error(confidence_of(before, features), kept), 4)
        metrics["ece_after"] = round(expected_calibration_error(confidence_of(calibration, features), kept), 4)
    box_correction, validation["box_correction"] = fit_box_correction(
        outcomes, groups, min_samples, current.box_correction if current else None)
    if not threshold_reports and not fitted_calibration:
        raise NotEnoughFeedback(f"not enough feedback to fit: need {min_samples} judged regions "
                                f"(a label's, for its threshold; with prelabel's signals, for calibration)")
    metrics["validation"] = validation
    if any(is_candidate(o) for o in outcomes):
        metrics["exploration"] = exploration_report(outcomes)
    return Learned(thresholds, calibration, metrics, box_correction)
