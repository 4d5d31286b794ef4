"""COCO AP/AR of predictions against ground truth, for boxes and masks, overall and per category (pycocotools)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# COCOeval.stats positions of the numbers we report.
SUMMARY = {"AP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5, "AR100": 8}
from prelabel.core.errors import PrelabelError


def load_coco(path: Path) -> COCO:
    """A COCO ground truth file, quietly."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def prediction_results(gt: COCO, predictions: Any) -> list[dict[str, Any]]:
    """COCO results (one dict per detection, with ``score``) from a results list or a full COCO document.

    A document's images are matched to the ground truth by ``file_name`` and its categories by name;
    annotations without a score count as 1.0.
    """
    if isinstance(predictions, list):
        return predictions
    if not isinstance(predictions, dict) or "annotations" not in predictions:
        raise PrelabelError("predictions must be a COCO results list or a COCO instances document")
    gt_image = {image["file_name"]: image["id"] for image in gt.dataset["images"]}
    gt_category = {category["name"]: category["id"] for category in gt.dataset["categories"]}
    image_of = {image["id"]: image["file_name"] for image in predictions["images"]}
    category_of = {category["id"]: category["name"] for category in predictions["categories"]}
    unknown = sorted(set(category_of.values()) - set(gt_category))
    if unknown:
        raise PrelabelError(f"prediction categories not in the ground truth: {', '.join(unknown)}")
    results = []
    for annotation in predictions["annotations"]:
        file_name = image_of[annotation["image_id"]]
        if file_name not in gt_image:
            continue
        result = {"image_id": gt_image[file_name], "category_id": gt_category[category_of[annotation["category_id"]]],
                  "bbox": annotation["bbox"], "score": annotation.get("score", 1.0)}
        if annotation.get("segmentation"):
            result["segmentation"] = annotation["segmentation"]
        results.append(result)
    return results


def evaluate(gt_path: Path, pred_path: Path) -> dict[str, Any]:
    """AP/AR for ``bbox`` (and ``segm`` when every prediction and ground truth has a segmentation)."""
    gt = load_coco(gt_path)
    results = prediction_results(gt, json.loads(pred_path.read_text(encoding="utf-8")))
    iou_types = ["bbox"]
    if results and all("segmentation" in r for r in results) and all(
            a.get("segmentation") for a in gt.dataset["annotations"]):
        iou_types.append("segm")
    report: dict[str, Any] = {"images": len(gt.getImgIds()), "predictions": len(results)}
    for iou_type in iou_types:
        report[iou_type] = _evaluate(gt, results, iou_type)
    return report


def _evaluate(gt: COCO, results: list[dict[str, Any]], iou_type: str) -> dict[str, Any]:
    if not results:
        return {"summary": {name: 0.0 for name in SUMMARY}, "per_category": {}}
    with contextlib.redirect_stdout(io.StringIO()):
        # loadRes fills in areas (and for bbox results, polygon segmentations) in place: give it a copy.
        detections = gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(gt, detections, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [iou, recall, category, area, max_dets]
    recall = evaluator.eval["recall"]  # [iou, category, area, max_dets]
    per_category = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        name = gt.cats[category_id]["name"]
        per_category[name] = {"AP": _mean(precision[:, :, k, 0, -1]), "AP50": _mean(precision[0, :, k, 0, -1]),
                              "AR100": _mean(recall[:, k, 0, -1])}
    # pycocotools reports -1 where there is no ground truth in that range (e.g. no small objects): None, "n/a".
    summary = {name: None if evaluator.stats[i] < 0 else round(float(evaluator.stats[i]), 4)
               for name, i in SUMMARY.items()}
    return {"summary": summary, "per_category": per_category}


def _mean(values: np.ndarray) -> float:
    valid = values[values > -1]  # -1 marks categories/areas without ground truth
    return round(float(valid.mean()), 4) if valid.size else 0.0


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table: one block per IoU type, one row per category."""
    lines = [f"{report['images']} images, {report['predictions']} predictions"]
    for iou_type in ("bbox", "segm"):
        if iou_type not in report:
            continue
        block = report[iou_type]
        lines += ["", f"[{iou_type}]  " + "  ".join(f"{k}={_number(v)}" for k, v in block["summary"].items()),
                  f"{'category':<24}{'AP':>8}{'AP50':>8}{'AR100':>8}"]
        lines += [f"{name:<24}{_number(row['AP']):>8}{_number(row['AP50']):>8}{_number(row['AR100']):>8}"
                  for name, row in block["per_category"].items()]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
