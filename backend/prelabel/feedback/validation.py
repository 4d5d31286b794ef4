"""Validated fits: a new calibration or threshold replaces the current one only if held-out feedback says so.

Every candidate is fitted on some annotations and judged on others (deterministic grouped k-fold: an
annotation's regions stay together, annotation ``i`` in time order goes to fold ``i % k``), against the
confidence it would replace, on the same held-out regions:

- **calibration**: applied only if the held-out log loss improves (by ``MIN_LOG_LOSS_GAIN``) **and** the
  held-out AUC of "region kept" does not drop by more than ``AUC_TOLERANCE``, and only if it does not give
  (nearly) the same confidence to every region. Two candidates: a *monotone* calibration of the heuristic
  confidence (Platt scaling, a 1-D logistic on its logit with a positive slope: it keeps the order, so the
  Data Manager ranking stays what the signals said) and the *multi-signal* logistic regression over all of
  :data:`prelabel.core.uncertainty.FEATURES`. The monotone one is preferred unless the multi-signal one ranks
  measurably better (held-out AUC higher by ``MIN_AUC_GAIN``). Isotonic regression is not used: it is
  monotone but piecewise constant, so it ties regions and tasks that the signals told apart.
- **thresholds**: a label's cut changes only where the held-out F-beta of cuts chosen on the other folds
  beats the current cut's held-out F-beta.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit, logit
from scipy.stats import rankdata

from prelabel.core.scoring import CorrectsNoBox, Scoring
from prelabel.core.uncertainty import Calibration, confidence_of, heuristic_confidence
from prelabel.feedback.metrics import cut_counts, expected_calibration_error, f_beta, search_cut

AUC_TOLERANCE = 0.01  # held-out AUC may drop by at most this much
MIN_AUC_GAIN = 0.02  # the multi-signal model must rank this much better than the monotone one to be preferred
MIN_LOG_LOSS_GAIN = 1e-3  # held-out log loss must fall by at least this much
MIN_SPREAD = 1e-3  # a model whose confidences have a smaller standard deviation ranks nothing: refused
MAX_FOLDS = 5
EPS = 1e-4


@dataclass(frozen=True)
class MonotoneCalibration(CorrectsNoBox):
    """Platt scaling of the heuristic confidence: ``P(kept) = expit(slope * logit(h) + intercept)``, slope > 0.

    It keeps the heuristic's order of regions (and so of tasks) and only makes the numbers mean something.
    """

    slope: float
    intercept: float

    @classmethod
    def fit(cls, features: np.ndarray, kept: np.ndarray) -> MonotoneCalibration:
        from sklearn.linear_model import LogisticRegression  # heavy (0.7 s to import) and needed by fits only

        x = _logit(heuristic_confidence(np.asarray(features, dtype=np.float64)))[:, None]
        model = LogisticRegression(C=1.0, max_iter=1000).fit(x, np.asarray(kept, dtype=bool))
        return cls(float(model.coef_[0][0]), float(model.intercept_[0]))

    def confidence(self, features: np.ndarray) -> np.ndarray:
        x = _logit(heuristic_confidence(np.asarray(features, dtype=np.float64)))
        return expit(self.slope * x + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "monotone", "of": "heuristic", "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonotoneCalibration:
        return cls(float(data["slope"]), float(data["intercept"]))


def calibration_from_dict(data: dict[str, Any]) -> Scoring:
    """A stored calibration of either kind (older fits have no ``kind``: the multi-signal logistic)."""
    if data.get("kind") == "monotone":
        return MonotoneCalibration.from_dict(data)
    return Calibration.from_dict(data)


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log likelihood of binary outcomes ``y`` under probabilities ``p`` (clipped)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")


def auc(p: np.ndarray, y: np.ndarray) -> float | None:
    """ROC AUC of ``p`` for ``y`` (ties count half); None when ``y`` holds one class only."""
    y = np.asarray(y, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return None
    ranks = rankdata(np.asarray(p, dtype=np.float64))
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def fold_of(groups: Sequence[Any], k: int = MAX_FOLDS) -> tuple[dict[Any, int], int]:
    """Deterministic grouped folds: the i-th distinct group (in order of appearance) goes to fold ``i % k``.

    Returns each group's fold and the number of folds (0 with fewer than two groups).
    """
    order = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    k = min(k, len(order))
    return ({g: i % k for g, i in order.items()}, k) if k >= 2 else ({}, 0)


def folds(groups: Sequence[Any], k: int = MAX_FOLDS) -> list[np.ndarray]:
    """One boolean "held out" mask per fold of :func:`fold_of`; none with fewer than two groups."""
    fold, k = fold_of(groups, k)
    which = np.array([fold.get(g, -1) for g in groups])
    return [which == f for f in range(k)]


def held_out_scores(p: np.ndarray, y: np.ndarray, fold_masks: Sequence[np.ndarray]) -> dict[str, float | None]:
    """Held-out figures of out-of-fold confidences ``p``: pooled log loss and ECE, fold-weighted AUC.

    AUC is averaged over folds (weighted by size) rather than pooled, so a model that gives every
    region the same number within a fold scores 0.5 even if its level differs between folds.
    """
    aucs, weights = [], []
    for mask in fold_masks:
        a = auc(p[mask], y[mask])
        if a is not None:
            aucs.append(a)
            weights.append(int(mask.sum()))
    return {"log_loss": round(log_loss(p, y), 4),
            "auc": round(float(np.average(aucs, weights=weights)), 4) if aucs else None,
            "ece": round(expected_calibration_error(p, y), 4)}


def _fit_candidate(kind: str, features: np.ndarray, kept: np.ndarray) -> Scoring:
    if kind == "monotone":
        return MonotoneCalibration.fit(features, kept)
    return Calibration.fit(features, kept)


def _out_of_fold(kind: str, features: np.ndarray, kept: np.ndarray, fold_masks: Sequence[np.ndarray]) -> np.ndarray:
    """Each region's confidence from a candidate fitted without its fold (0.5 where a fold cannot be fitted)."""
    out = np.full(len(kept), np.nan)
    for mask in fold_masks:
        train = ~mask
        if kept[train].all() or not kept[train].any():
            out[mask] = kept[train].mean() if train.any() else 0.5  # one class only: its base rate
            continue
        out[mask] = _fit_candidate(kind, features[train], kept[train]).confidence(features[mask])
    return out


def validate_calibration(
    features: np.ndarray, kept: np.ndarray, groups: Sequence[Any], current: Scoring | None
) -> tuple[Scoring | None, dict[str, Any]]:
    """Choose the calibration to predict with: a validated new one, or ``current`` (None: the heuristic).

    Returns the chosen model and the report: held-out figures of the current confidence and of each
    candidate, the decision and why.
    """
    features, kept = np.asarray(features, dtype=np.float64), np.asarray(kept, dtype=bool)
    fold_masks = folds(groups)
    report: dict[str, Any] = {
        "method": f"grouped {len(fold_masks)}-fold cross-validation by annotation",
        "regions": int(len(kept)), "annotations": len(set(groups)),
        "auc_tolerance": AUC_TOLERANCE, "min_auc_gain_for_multi_signal": MIN_AUC_GAIN,
        "current_kind": _kind(current),
    }
    if not fold_masks or kept.all() or not kept.any():
        report.update(decision="kept current",
                      reason="too little held-out evidence: needs kept and deleted regions from 2+ annotations")
        return current, report
    base = held_out_scores(confidence_of(current, features), kept, fold_masks)
    report["current"] = base
    candidates: dict[str, tuple[Scoring, dict[str, Any]]] = {}
    for kind in ("monotone", "multi_signal"):
        scores = held_out_scores(_out_of_fold(kind, features, kept, fold_masks), kept, fold_masks)
        model = _fit_candidate(kind, features, kept)
        spread = float(np.std(model.confidence(features)))
        verdict = _verdict(kind, model, scores, base, spread)
        report[kind] = {**scores, "spread": round(spread, 4), "verdict": verdict or "passes",
                        "model": model.to_dict()}
        if verdict is None:
            candidates[kind] = (model, scores)
    if not candidates:
        report.update(decision="kept current", reason="; ".join(
            f"{kind}: {report[kind]['verdict']}" for kind in ("monotone", "multi_signal")))
        return current, report
    choice = "monotone" if "monotone" in candidates else "multi_signal"
    if choice == "monotone" and "multi_signal" in candidates:
        mono_auc, multi_auc = candidates["monotone"][1]["auc"], candidates["multi_signal"][1]["auc"]
        if mono_auc is not None and multi_auc is not None and multi_auc >= mono_auc + MIN_AUC_GAIN:
            choice = "multi_signal"
    model, scores = candidates[choice]
    report.update(decision=f"applied {choice}", reason=(
        f"held-out log loss {base['log_loss']} -> {scores['log_loss']}, AUC {base['auc']} -> {scores['auc']}"
        + ("" if choice == "multi_signal" or "multi_signal" not in candidates
           else " (the multi-signal model passed too but did not rank measurably better)")))
    return model, report


def _kind(model: Scoring | None) -> str:
    if model is None:
        return "heuristic"
    return "monotone" if isinstance(model, MonotoneCalibration) else "multi_signal"


def _verdict(kind: str, model: Scoring, scores: dict[str, Any], base: dict[str, Any], spread: float) -> str | None:
    """Why a candidate is refused, or None when it passes."""
    if spread < MIN_SPREAD:
        return f"refused: it gives every region (nearly) the same confidence (std {spread:.4f}), ranking nothing"
    if isinstance(model, MonotoneCalibration) and model.slope <= 0:
        return f"refused: its slope {model.slope:.3f} is not positive, it would invert or flatten the order"
    if scores["auc"] is None or base["auc"] is None:
        return "refused: no held-out fold holds both kept and deleted regions, AUC cannot be checked"
    if scores["auc"] < base["auc"] - AUC_TOLERANCE:
        return f"refused: held-out AUC {base['auc']} -> {scores['auc']} drops more than {AUC_TOLERANCE}"
    if scores["log_loss"] > base["log_loss"] - MIN_LOG_LOSS_GAIN:
        return f"refused: held-out log loss {base['log_loss']} -> {scores['log_loss']} does not improve"
    return None


def validate_threshold(
    scores: np.ndarray,
    kept: np.ndarray,
    groups: Sequence[Any],
    added_groups: Sequence[Any],
    floor: float,
    current: float,
    beta: float,
    weights: np.ndarray | None = None,
) -> tuple[float, dict[str, Any]]:
    """A label's cut: the F-beta-best cut of all its feedback if cuts chosen on the other folds beat
    ``current`` on the held-out folds, else ``current``.

    ``scores``/``kept``/``groups``: the judged (shown) regions' detector scores, fates and annotations;
    ``added_groups``: the annotation of each miss (a region the annotator drew). ``floor``: the lowest cut
    that can be judged (below ``current`` where exploration candidates were judged); ``weights``: each
    region's inverse chance of having been shown (see :func:`prelabel.feedback.metrics.cut_counts`).
    """
    scores, kept = np.asarray(scores, dtype=np.float64), np.asarray(kept, dtype=bool)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    fold, k = fold_of([*groups, *added_groups])
    fitted, _ = search_cut(scores, kept, len(added_groups), floor, beta, w)
    report: dict[str, Any] = {"current": round(current, 4), "fitted": round(fitted, 4), "judged": int(len(kept))}
    if not k:
        report.update(applied=False, reason="too few annotations to hold any out")
        return current, report
    which = np.array([fold[g] for g in groups], dtype=np.int64)
    added_fold = np.array([fold[g] for g in added_groups], dtype=np.int64)
    new_counts, old_counts = np.zeros(3), np.zeros(3)
    for f in range(k):
        held, misses = which == f, int((added_fold == f).sum())
        cut, _ = search_cut(scores[~held], kept[~held], int((added_fold != f).sum()), floor, beta, w[~held])
        new_counts += cut_counts(scores[held], kept[held], misses, cut, w[held])
        old_counts += cut_counts(scores[held], kept[held], misses, current, w[held])
    f_new, f_old = f_beta(*new_counts, beta), f_beta(*old_counts, beta)
    report[f"held_out_f{beta:g}"] = {"current": round(f_old, 4), "fitted": round(f_new, 4)}
    if f_new > f_old + 1e-9 and abs(fitted - current) > 1e-9:
        report.update(applied=True, reason=f"held-out F{beta:g} {f_old:.4f} -> {f_new:.4f}")
        return fitted, report
    report.update(applied=False, reason=f"held-out F{beta:g} does not improve ({f_old:.4f} -> {f_new:.4f})")
    return current, report
