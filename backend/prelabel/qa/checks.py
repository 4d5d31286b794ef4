"""Automated checks of annotations: degenerate, tiny, out-of-frame, duplicate and cross-label overlapping
shapes, agreement between annotators, and scores against a gold set."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from prelabel.core.geometry import box_iou, polygon_area
from prelabel.core.shapes import Shape
from prelabel.qa.dataset import Item

KINDS = ("degenerate", "tiny", "out_of_frame", "duplicate", "label_overlap", "low_consensus", "gold_mismatch")


@dataclass(frozen=True)
class QaThresholds:
    """When a shape or an image is flagged."""

    min_side: float = 4.0  # pixels: a narrower box is "tiny"
    min_area: float = 16.0  # square pixels
    frame_tolerance: float = 0.5  # pixels a shape may stick out of the image
    duplicate_iou: float = 0.9  # same label, same annotator
    overlap_iou: float = 0.8  # different labels, same annotator
    match_iou: float = 0.5  # a shape matches another of the same label
    min_consensus: float = 0.6  # mean pairwise agreement between annotators of one image
    min_gold_f1: float = 0.8


@dataclass(frozen=True)
class Issue:
    """One finding: what, on which image, by whom, which shapes."""

    kind: str
    key: str
    annotator: str
    refs: tuple[str, ...]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "refs": list(self.refs)}


def check_items(items: list[Item], thresholds: QaThresholds, gold: list[Item] | None = None
                ) -> tuple[list[Issue], dict[str, float], dict[str, dict[str, float]]]:
    """Every issue, the consensus of each multi-annotator image, and gold precision/recall/F1 per annotator."""
    issues: list[Issue] = []
    consensus: dict[str, float] = {}
    for item in items:
        for annotator, shapes in item.annotators.items():
            issues += shape_issues(item, annotator, shapes, thresholds)
            issues += pair_issues(item, annotator, shapes, thresholds)
        if len(item.annotators) > 1:
            consensus[item.key] = round(item_consensus(item, thresholds.match_iou), 4)
            if consensus[item.key] < thresholds.min_consensus:
                issues.append(Issue("low_consensus", item.key, ", ".join(item.annotators), (),
                                    f"annotators agree {consensus[item.key]:.2f} (mean matched IoU), "
                                    f"below {thresholds.min_consensus}"))
    gold_scores: dict[str, dict[str, float]] = {}
    if gold is not None:
        gold_issues, gold_scores = gold_check(items, gold, thresholds)
        issues += gold_issues
    return issues, consensus, gold_scores


def shape_issues(item: Item, annotator: str, shapes: list[Shape], t: QaThresholds) -> list[Issue]:
    """Degenerate, tiny and out-of-frame shapes."""
    issues = []
    for shape in shapes:
        x1, y1, x2, y2 = shape.box_xyxy
        width, height = x2 - x1, y2 - y1
        flat = shape.polygon is not None and (len(shape.polygon) < 3 or polygon_area(shape.polygon) <= 0)
        if width <= 0 or height <= 0 or flat:
            issues.append(Issue("degenerate", item.key, annotator, (shape.ref,),
                                f"{shape.label}: {'polygon without area' if flat else 'box without area'} "
                                f"({width:.1f} x {height:.1f} px)"))
        elif min(width, height) < t.min_side or width * height < t.min_area:
            issues.append(Issue("tiny", item.key, annotator, (shape.ref,),
                                f"{shape.label}: {width:.1f} x {height:.1f} px box"))
        if item.width and item.height and (
                min(x1, y1) < -t.frame_tolerance or x2 > item.width + t.frame_tolerance
                or y2 > item.height + t.frame_tolerance):
            issues.append(Issue("out_of_frame", item.key, annotator, (shape.ref,),
                                f"{shape.label}: box [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}] leaves the "
                                f"{item.width} x {item.height} image"))
    return issues


def pair_issues(item: Item, annotator: str, shapes: list[Shape], t: QaThresholds) -> list[Issue]:
    """Duplicates (same label) and suspicious overlaps (different labels) within one annotator's shapes."""
    issues = []
    iou = box_iou(_boxes(shapes), _boxes(shapes))
    for i, j in itertools.combinations(range(len(shapes)), 2):
        a, b = shapes[i], shapes[j]
        if a.label == b.label and iou[i, j] >= t.duplicate_iou:
            issues.append(Issue("duplicate", item.key, annotator, (a.ref, b.ref),
                                f"two {a.label} shapes overlap with IoU {iou[i, j]:.2f}"))
        elif a.label != b.label and iou[i, j] >= t.overlap_iou:
            issues.append(Issue("label_overlap", item.key, annotator, (a.ref, b.ref),
                                f"{a.label} and {b.label} cover the same area (IoU {iou[i, j]:.2f})"))
    return issues


def match(a: list[Shape], b: list[Shape], min_iou: float) -> list[float]:
    """IoUs of a greedy one-to-one matching of same-label shapes (best pairs first)."""
    iou = box_iou(_boxes(a), _boxes(b))
    same = np.array([[x.label == y.label for y in b] for x in a], dtype=bool).reshape(len(a), len(b))
    iou = np.where(same, iou, 0.0)
    used_a, used_b, matched = set(), set(), []
    for flat in np.argsort(-iou, axis=None):
        i, j = divmod(int(flat), len(b))
        if iou[i, j] < min_iou:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matched.append(float(iou[i, j]))
    return matched


def agreement(a: list[Shape], b: list[Shape], min_iou: float) -> float:
    """Sum of matched IoUs over the larger shape count: 1.0 for identical sets, 0 for disjoint ones."""
    if not a and not b:
        return 1.0
    return sum(match(a, b, min_iou)) / max(len(a), len(b))


def item_consensus(item: Item, min_iou: float) -> float:
    """Mean pairwise agreement of an image's annotators."""
    pairs = list(itertools.combinations(item.annotators.values(), 2))
    return float(np.mean([agreement(a, b, min_iou) for a, b in pairs]))


def gold_check(items: list[Item], gold: list[Item], t: QaThresholds
               ) -> tuple[list[Issue], dict[str, dict[str, float]]]:
    """Each annotator's shapes against the gold image's (matched by key, else by file name)."""
    by_key = {g.key: g for g in gold}
    by_name = {g.key.rsplit("/", 1)[-1]: g for g in gold}
    issues, totals = [], {}
    for item in items:
        reference = by_key.get(item.key) or by_name.get(item.key.rsplit("/", 1)[-1])
        if reference is None:
            continue
        truth = [s for shapes in reference.annotators.values() for s in shapes]
        for annotator, shapes in item.annotators.items():
            hits = len(match(shapes, truth, t.match_iou))
            total = totals.setdefault(annotator, [0, 0, 0])
            total[0] += hits
            total[1] += len(shapes)
            total[2] += len(truth)
            f1 = _f1(hits, len(shapes), len(truth))
            if f1 < t.min_gold_f1:
                issues.append(Issue("gold_mismatch", item.key, annotator, (),
                                    f"F1 {f1:.2f} against the gold set ({hits} of {len(truth)} gold shapes found, "
                                    f"{len(shapes) - hits} extra)"))
    scores = {a: {"precision": round(h / p, 4) if p else 1.0, "recall": round(h / g, 4) if g else 1.0,
                  "f1": round(_f1(h, p, g), 4)} for a, (h, p, g) in totals.items()}
    return issues, scores


def _f1(hits: int, predicted: int, truth: int) -> float:
    return 1.0 if predicted + truth == 0 else 2 * hits / (predicted + truth)


def _boxes(shapes: list[Shape]) -> np.ndarray:
    return np.array([s.box_xyxy for s in shapes], dtype=np.float64).reshape(-1, 4)
