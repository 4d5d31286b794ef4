"""``prelabel accept`` in Label Studio: turn the predictions that clear the precision cut into annotations.

A task without annotations whose newest prelabel prediction has at least one region and every region at or
above the cut (:mod:`prelabel.feedback.accept`) becomes an annotation: the prediction's result, each item
marked ``prelabel.machine_accepted`` and with the region note ``prelabel: machine-accepted``, started from the
prediction (``parent_prediction``). The webhooks ignore these annotations (they are not human judgements);
``undo_project`` deletes them again. Tasks that already have an annotation are never touched, so a second
run changes nothing. The other tasks are listed most-uncertain first, and the Data Manager tab
``prelabel: to review (most uncertain first)`` shows the unannotated ones in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prelabel.core.features import FEATURES
from prelabel.core.scoring import Confidence
from prelabel.core.uncertainty import confidence_of
from prelabel.feedback.accept import PrecisionCut
from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.result_items import ResultItem, our_newest_prediction, parse_items

MACHINE_NOTE = "prelabel: machine-accepted"
REVIEW_TAB = "prelabel: to review (most uncertain first)"


def region_confidences(items: Sequence[ResultItem], calibration: Confidence | None) -> np.ndarray:
    """The current model's confidence of each region of a stored prediction (from its prelabel signals;
    an item without them keeps its stored ``score``)."""
    out = []
    for item in items:
        features = item.features or {}
        if all(name in features for name in FEATURES):
            row = np.array([[features[name] for name in FEATURES]], dtype=np.float64)
            out.append(float(confidence_of(calibration, row)[0]))
        else:
            out.append(item.score or 0.0)
    return np.array(out)


def is_machine_accepted(result: Sequence[Any]) -> bool:
    """Whether an annotation's result was made by :func:`accept_project` (not a human judgement)."""
    items = parse_items(result, types=None)
    return bool(result) and len(items) == len(result) and all(item.machine_accepted for item in items)


def machine_result(items: Sequence[ResultItem], confidences: np.ndarray, version: str | None) -> list[dict[str, Any]]:
    """A prediction's result items as annotation result items marked machine-accepted."""
    result = []
    for item, confidence in zip(items, confidences, strict=True):
        clean = {k: v for k, v in item.raw.items() if k not in ("score", "prelabel", "meta", "readonly")}
        clean["meta"] = {"text": [f"{MACHINE_NOTE} (confidence {confidence:.2f})"]}
        clean["prelabel"] = {"machine_accepted": True, "confidence": round(float(confidence), 4),
                             "model_version": version, "region": (item.raw.get("prelabel") or {}).get("region")}
        result.append(clean)
    return result


def accept_project(api: LabelStudioClient, project: int, cut: PrecisionCut, calibration: Confidence | None,
                   dry_run: bool = False, views: bool = True) -> dict[str, Any]:
    """Accept the safe tasks of a Label Studio project."""
    accepted, routed, annotated, no_prediction = [], [], 0, 0
    for task in api.tasks(project):
        if task.get("total_annotations") or task.get("annotations"):
            annotated += 1
            continue
        prediction = our_newest_prediction(task)
        # Exploration candidates are below the threshold: never accepted, not judged.
        items = [item for item in parse_items(prediction.get("result"), types=None) if not item.candidate] \
            if prediction is not None else []
        if prediction is None or not items:
            no_prediction += 1
            continue
        confidences = region_confidences(items, calibration)
        if cut.cut is not None and bool((confidences >= cut.cut).all()):
            accepted.append(task["id"])
            if not dry_run:
                api.call("POST", f"/api/tasks/{task['id']}/annotations", json={
                    "result": machine_result(items, confidences, prediction.get("model_version")),
                    "parent_prediction": prediction.get("id"), "lead_time": 0})
        else:
            routed.append((float(confidences.min()), task["id"]))
    routed.sort()
    view = None
    if views and not dry_run:
        view = api.save_view(project, REVIEW_TAB, {
            "ordering": ["tasks:predictions_score"],
            "filters": {"conjunction": "and", "items": [
                {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}]}})
    return {"project": project, **cut.to_dict(), "accepted": len(accepted), "accepted_tasks": accepted,
            "to_review": [task for _, task in routed], "already_annotated": annotated,
            "without_prediction": no_prediction, "dry_run": dry_run, "review_view": view}


def undo_project(api: LabelStudioClient, project: int) -> int:
    """Delete every machine-accepted annotation of a project; returns how many."""
    removed = 0
    for task in api.tasks(project):
        for annotation in task.get("annotations") or []:
            if is_machine_accepted(annotation.get("result") or []):
                api.call("DELETE", f"/api/annotations/{annotation['id']}")
                removed += 1
    return removed
