"""Learn from feedback: per-label box thresholds that maximise F-beta, and a confidence calibration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prelabel.core.labels import LabelPrompt
from prelabel.core.uncertainty import FEATURES, Calibration, heuristic_confidence
from prelabel.feedback.matching import Outcome, RegionOutcome


@dataclass(frozen=True)
class Learned:
    """What a fit produced; the server predicts with it and reports a new ``model_version``."""

    thresholds: dict[str, float]
    calibration: Calibration | None
    metrics: dict[str, Any] = field(default_factory=dict)

    def apply(self, prompts: Sequence[LabelPrompt]) -> tuple[LabelPrompt, ...]:
        """The prompts with learned box thresholds for the labels that have one."""
        return tuple(replace(p, box_threshold=self.thresholds[p.name]) if p.name in self.thresholds else p
                     for p in prompts)

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds,
                "calibration": self.calibration.to_dict() if self.calibration else None,
                "metrics": self.metrics}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Learned:
        calibration = data.get("calibration")
        return cls({str(k): float(v) for k, v in data.get("thresholds", {}).items()},
                   Calibration.from_dict(calibration) if calibration else None, dict(data.get("metrics", {})))


def expected_calibration_error(confidence: np.ndarray, kept: np.ndarray, bins: int = 10) -> float:
    """ECE: the bin-weighted gap between mean confidence and the share actually kept (equal-width bins)."""
    confidence, kept = np.asarray(confidence, dtype=np.float64), np.asarray(kept, dtype=np.float64)
    if len(confidence) == 0:
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in np.unique(which):
        in_bin = which == b
        error += in_bin.mean() * abs(confidence[in_bin].mean() - kept[in_bin].mean())
    return float(error)


def f_beta(tp: int, fp: int, fn: int, beta: float) -> float:
    """F-beta from counts (0 when nothing is right)."""
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * fn + fp
    return (1 + b2) * tp / denominator if denominator else 0.0


def best_threshold(outcomes: Sequence[RegionOutcome], current: float, beta: float = 1.0) -> tuple[float, float]:
    """The detector-score cut that maximises F-beta on one label's outcomes, and that F-beta.

    Kept regions are true positives, deleted ones false positives, added ones misses that no cut can
    recover. Only regions that were shown can be judged, so the cut never goes below ``current``.
    """
    predicted = [o for o in outcomes if o.outcome is not Outcome.ADDED]
    scores = np.array([detector_score(o) for o in predicted])
    kept = np.array([o.kept for o in predicted], dtype=bool)
    added = sum(o.outcome is Outcome.ADDED for o in outcomes)
    best, best_f = current, -1.0
    for cut in sorted({current, *scores[scores >= current].tolist()}):
        shown = scores >= cut
        score = f_beta(int((shown & kept).sum()), int((shown & ~kept).sum()), int((~shown & kept).sum()) + added, beta)
        if score > best_f + 1e-12:
            best, best_f = float(cut), score
    return best, best_f


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
) -> Learned:
    """Per-label thresholds (labels with ``min_samples`` judged regions) and a calibration (if enough data).

    Raises ValueError when there is too little feedback to learn anything.
    """
    thresholds, per_label = {}, {}
    for label in sorted({o.label for o in outcomes}):
        mine = [o for o in outcomes if o.label == label]
        judged = sum(o.outcome is not Outcome.ADDED for o in mine)
        if judged < min_samples or label not in current_thresholds:
            continue
        cut, score = best_threshold(mine, current_thresholds[label], beta)
        thresholds[label] = round(cut, 4)
        per_label[label] = {"threshold": round(cut, 4), f"f{beta:g}": round(score, 4), "judged": judged}
    with_signals = [o for o in outcomes if o.outcome is not Outcome.ADDED and o.features
                    and all(name in o.features for name in FEATURES)]
    calibration, metrics = None, {"labels": per_label, "regions": len(with_signals)}
    if len(with_signals) >= min_samples:
        features = feature_matrix(with_signals)
        kept = np.array([o.kept for o in with_signals])
        try:
            calibration = Calibration.fit(features, kept)
        except ValueError as exc:
            metrics["calibration_skipped"] = str(exc)
        else:
            metrics["ece_before"] = round(expected_calibration_error(heuristic_confidence(features), kept), 4)
            metrics["ece_after"] = round(expected_calibration_error(calibration.confidence(features), kept), 4)
    if not thresholds and calibration is None:
        raise ValueError(f"not enough feedback to fit: need {min_samples} judged regions "
                         f"(a label's, for its threshold; with prelabel's signals, for calibration)")
    return Learned(thresholds, calibration, metrics)
