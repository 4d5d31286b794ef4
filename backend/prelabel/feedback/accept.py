"""Automated labeling at a target precision: the confidence cut whose held-out precision bound meets it.

Every judged region of the feedback gets a *held-out* confidence (the validated calibration refitted without
the region's fold; the heuristic needs no fit). A cut ``t`` would have accepted the feedback tasks whose
least confident region is >= ``t``; among the cuts for which the regions of those tasks have a
Clopper-Pearson lower bound of their precision (share kept by the annotators) at or above the target, the
lowest is chosen: the most tasks at that precision. Applying the cut to a tool's tasks is the tool's part
(:mod:`prelabel.labelstudio.accept`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from prelabel.core.uncertainty import FEATURES, Calibration, confidence_of
from prelabel.feedback.fit import Learned, feature_matrix
from prelabel.feedback.matching import Outcome, RegionOutcome
from prelabel.feedback.validation import MonotoneCalibration, folds


def clopper_pearson_lower(kept: int, n: int, confidence_level: float = 0.95) -> float:
    """One-sided lower confidence bound of a binomial proportion (exact, Clopper-Pearson)."""
    from scipy.stats import beta  # heavy (0.4 s to import) and needed by auto-accept only

    if n == 0 or kept == 0:
        return 0.0
    return float(beta.ppf(1 - confidence_level, kept, n - kept + 1))


@dataclass(frozen=True)
class PrecisionCut:
    """The chosen confidence cut and the held-out evidence for it (``cut`` is None when no cut qualifies)."""

    cut: float | None
    target: float
    confidence_level: float
    regions: int  # judged regions of the feedback
    above: int  # of them at or above the cut
    kept_above: int
    precision: float | None  # point estimate above the cut
    precision_lower_bound: float | None

    @property
    def estimated_error_rate(self) -> float | None:
        return None if self.precision is None else round(1 - self.precision, 4)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "estimated_error_rate": self.estimated_error_rate,
                "error_rate_upper_bound": None if self.precision_lower_bound is None
                else round(1 - self.precision_lower_bound, 4)}


def choose_cut(confidence: np.ndarray, correct: np.ndarray, target: float,
               confidence_level: float = 0.95, groups: Sequence[Any] | None = None) -> PrecisionCut:
    """The lowest confidence cut whose accepted regions' precision has a lower bound >= ``target``.

    With ``groups`` (each region's task) the cut is judged as it is used: a task is accepted when its
    least confident region clears the cut, and the precision is that of all regions of accepted tasks.
    """
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool)
    if groups is None:
        unit_conf, unit_n, unit_kept = confidence, np.ones(len(confidence), int), correct.astype(int)
    else:
        keys = list(dict.fromkeys(groups))
        index = {g: i for i, g in enumerate(keys)}
        which = np.array([index[g] for g in groups], dtype=np.int64)
        unit_conf = np.full(len(keys), np.inf)
        np.minimum.at(unit_conf, which, confidence)
        unit_n, unit_kept = np.bincount(which, minlength=len(keys)), np.bincount(which, correct, len(keys))
    order = np.argsort(-unit_conf, kind="stable")
    conf_sorted, n_cum, kept_cum = unit_conf[order], np.cumsum(unit_n[order]), np.cumsum(unit_kept[order])
    best: tuple[float, int, int, float] | None = None
    for i in range(len(conf_sorted)):
        if i + 1 < len(conf_sorted) and conf_sorted[i + 1] == conf_sorted[i]:
            continue  # a cut takes every region (task) of equal confidence
        n, kept = int(n_cum[i]), int(round(kept_cum[i]))
        lower = clopper_pearson_lower(kept, n, confidence_level)
        if lower >= target:
            best = (float(conf_sorted[i]), n, kept, lower)
    if best is None:
        return PrecisionCut(None, target, confidence_level, len(confidence), 0, 0, None, None)
    cut, n, kept, lower = best
    return PrecisionCut(round(cut, 6), target, confidence_level, len(confidence), n, kept, round(kept / n, 4),
                        round(lower, 4))


def held_out_confidence(outcomes: Sequence[RegionOutcome], groups: Sequence[Any],
                        learned: Learned | None) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Held-out confidences, kept flags and groups of the judged regions that carry prelabel's signals."""
    rows = [(o, g) for o, g in zip(outcomes, groups) if o.outcome is not Outcome.ADDED and o.features
            and all(name in o.features for name in FEATURES)]
    features = feature_matrix([o for o, _ in rows])
    kept = np.array([o.kept for o, _ in rows], dtype=bool)
    model = learned.calibration if learned else None
    if model is None:
        return confidence_of(None, features), kept, [g for _, g in rows]  # the heuristic was fitted on nothing
    kind: type = MonotoneCalibration if isinstance(model, MonotoneCalibration) else Calibration
    out = np.full(len(kept), np.nan)
    for mask in folds([g for _, g in rows]):
        train = ~mask
        if kept[train].all() or not kept[train].any():
            out[mask] = confidence_of(model, features[mask])
            continue
        out[mask] = kind.fit(features[train], kept[train]).confidence(features[mask])
    if np.isnan(out).any():  # fewer than two annotations: nothing to hold out
        out[np.isnan(out)] = confidence_of(model, features[np.isnan(out)])
    return out, kept, [g for _, g in rows]
