"""Label Studio webhook events (annotations created, updated, deleted) -> the feedback service."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from prelabel.core.errors import BadRequest
from prelabel.feedback.service import FeedbackService
from prelabel.labelstudio.accept import is_machine_accepted
from prelabel.labelstudio.result_items import ResultError, is_ours, result_shapes

log = logging.getLogger(__name__)

# Every action Label Studio's webhooks send (label_studio/webhooks/models.py, 1.23).
LABEL_STUDIO_ACTIONS = frozenset({
    "PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "TASKS_CREATED", "TASKS_DELETED",
    "ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED",
    "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED", "REVIEW_CREATED", "REVIEW_UPDATED",
    "REVIEWS_DELETED", "START_TRAINING",
})
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")


class WebhookError(BadRequest):
    """A webhook body that is not a Label Studio event prelabel can use; answered with 400, nothing stored."""


def handle_webhook(service: FeedbackService, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Process one webhook body; raises :class:`WebhookError` for malformed or foreign ones."""
    action = payload.get("action")
    if not isinstance(action, str) or action not in LABEL_STUDIO_ACTIONS:
        raise WebhookError(f"not a Label Studio webhook: unknown action {action!r}")
    project = project_id(payload)
    if action in ANNOTATION_ACTIONS:
        return _annotation(service, action, project, payload)
    if action == "ANNOTATIONS_DELETED":
        ids = [a.get("id") for a in _list(payload, "annotations") if isinstance(a, dict)]
        if not ids or not all(isinstance(i, int) for i in ids):
            raise WebhookError("ANNOTATIONS_DELETED needs 'annotations' with integer ids")
        return {"status": "deleted", "annotations": service.forget_annotations(action, project, ids)}
    return {"status": "ignored", "action": action}


def _annotation(service: FeedbackService, action: str, project: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    annotation = payload.get("annotation")
    if not isinstance(annotation, dict) or not isinstance(annotation.get("id"), int):
        raise WebhookError(f"{action} needs an 'annotation' object with an integer 'id'")
    human = _list(annotation, "result")
    task = annotation.get("task")
    if not isinstance(task, int) and isinstance(payload.get("task"), dict):
        task = payload["task"].get("id")
    if not isinstance(task, int):
        raise WebhookError(f"{action} needs the annotation's task id")
    if annotation.get("was_cancelled"):
        return {"status": "ignored", "reason": "the task was skipped"}
    prediction = annotation.get("prediction")
    if not isinstance(prediction, dict) or not isinstance(prediction.get("result"), list):
        return {"status": "ignored", "reason": "the annotation did not start from a prediction"}
    if is_machine_accepted(human):
        return {"status": "ignored", "reason": "machine-accepted by prelabel accept, not a human judgement"}
    version = str(prediction.get("model_version") or "")
    if not is_ours(prediction):
        return {"status": "ignored", "reason": f"the prediction is from another model ({version!r})"}
    try:
        predicted, final = result_shapes(prediction["result"]), result_shapes(human)
    except ResultError as exc:
        raise WebhookError(str(exc)) from exc
    lead_time = annotation.get("lead_time")
    updated_at = annotation.get("updated_at")  # the annotation's version: a redelivery is stored once
    status, counts = service.record_annotation(
        action, project, task, annotation["id"], version, predicted, final,
        float(lead_time) if isinstance(lead_time, (int, float)) else None,
        updated_at if isinstance(updated_at, str) and updated_at else None)
    # "stored"; "duplicate" (this version was stored before); "stale" (a newer version is stored);
    # "deleted" (the annotation was deleted meanwhile). Each is an acknowledgement: nothing to resend.
    return {"status": status, "annotation": annotation["id"], "regions": counts}


def project_id(payload: Mapping[str, Any]) -> str:
    """The Label Studio project id of a webhook or request body, as a string (``"3.1600000000"`` -> ``"3"``)."""
    project = payload.get("project")
    if isinstance(project, dict):
        project = project.get("id")
    if project is None and isinstance(payload.get("annotation"), dict):
        project = payload["annotation"].get("project")
    text = normalise_project(project)
    if not text:
        raise WebhookError("the body names no Label Studio project id")
    return text


def normalise_project(project: Any) -> str:
    """A project id as Label Studio sends it (``3``, ``"3"``, ``"3.1690000000"``) -> ``"3"``; ``""`` if none."""
    text = str(project).split(".")[0] if project is not None else ""
    return text if text.isdigit() else ""


def _list(container: Mapping[str, Any], key: str) -> list[Any]:
    value = container.get(key)
    if not isinstance(value, list):
        raise WebhookError(f"{key!r} must be a list")
    return value
