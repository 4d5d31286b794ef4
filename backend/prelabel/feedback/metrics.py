"""The figures a fit is chosen and judged by: F-beta of a score cut, the cut that maximises it, and the expected
calibration error."""

from __future__ import annotations

import numpy as np


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


def f_beta(tp: float, fp: float, fn: float, beta: float) -> float:
    """F-beta from counts (0 when nothing is right)."""
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * fn + fp
    return (1 + b2) * tp / denominator if denominator else 0.0


def search_cut(scores: np.ndarray, kept: np.ndarray, added: int, floor: float, beta: float,
               weights: np.ndarray | None = None) -> tuple[float, float]:
    """The cut (``floor`` or a judged score above it) that maximises F-beta, and that F-beta."""
    scores, kept = np.asarray(scores, dtype=np.float64), np.asarray(kept, dtype=bool)
    best, best_f = floor, -1.0
    for cut in sorted({floor, *scores[scores >= floor].tolist()}):
        score = f_beta(*cut_counts(scores, kept, added, cut, weights), beta)
        if score > best_f + 1e-12:
            best, best_f = float(cut), score
    return best, best_f


def cut_counts(scores: np.ndarray, kept: np.ndarray, added: int, cut: float,
               weights: np.ndarray | None = None) -> np.ndarray:
    """``(tp, fp, fn)`` of showing regions with score >= ``cut``; ``added`` misses no cut recovers.

    ``weights``: each judged region's inverse chance of having been shown (1 for shown regions, ``n / m`` for
    exploration candidates), so a sample of below-threshold detections counts for all of them; the true
    objects are counted once each (kept regions + added ones), so ``fn`` is what the weighted ``tp`` leaves.
    """
    scores, kept = np.asarray(scores, dtype=np.float64), np.asarray(kept, dtype=bool)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    shown = scores >= cut
    tp, fp = float(w[shown & kept].sum()), float(w[shown & ~kept].sum())
    return np.array([tp, fp, max(float(kept.sum()) + added - tp, 0.0)], dtype=np.float64)
