"""Label Studio webhook events -> matched outcomes in the store; fits on demand. No HTTP framework here."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prelabel.feedback.accept import PrecisionCut, choose_cut, held_out_confidence, is_machine_accepted
from prelabel.feedback.fit import Learned, fit_feedback
from prelabel.feedback.matching import match_shapes
from prelabel.feedback.report import build_report
from prelabel.feedback.store import FeedbackStore
from prelabel.formats.labelstudio import result_shapes
from prelabel.labels import LabelPrompt

log = logging.getLogger(__name__)

# Every action Label Studio's webhooks send (label_studio/webhooks/models.py, 1.23).
LABEL_STUDIO_ACTIONS = frozenset({
    "PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "TASKS_CREATED", "TASKS_DELETED",
    "ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED",
    "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED", "REVIEW_CREATED", "REVIEW_UPDATED",
    "REVIEWS_DELETED", "START_TRAINING",
})
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")


class WebhookError(ValueError):
    """A webhook body that is not a Label Studio event prelabel can use; answered with 400, nothing stored."""


@dataclass(frozen=True)
class FeedbackSettings:
    """Matching and fitting knobs."""

    match_iou: float = 0.5
    unchanged_iou: float = 0.95
    beta: float = 1.0
    min_samples: int = 20


class FeedbackService:
    """Records what annotators did with prelabel's predictions and learns from it."""

    def __init__(self, store: FeedbackStore, settings: FeedbackSettings | None = None) -> None:
        self.store = store
        self.settings = settings or FeedbackSettings()

    def handle(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Process one webhook body; raises :class:`WebhookError` for malformed or foreign ones."""
        action = payload.get("action")
        if not isinstance(action, str) or action not in LABEL_STUDIO_ACTIONS:
            raise WebhookError(f"not a Label Studio webhook: unknown action {action!r}")
        project = project_id(payload)
        if action in ANNOTATION_ACTIONS:
            return self._annotation(action, project, payload)
        if action == "ANNOTATIONS_DELETED":
            ids = [a.get("id") for a in _list(payload, "annotations") if isinstance(a, dict)]
            if not ids or not all(isinstance(i, int) for i in ids):
                raise WebhookError("ANNOTATIONS_DELETED needs 'annotations' with integer ids")
            return {"status": "deleted", "annotations": self.store.delete_annotations(action, project, ids)}
        return {"status": "ignored", "action": action}

    def _annotation(self, action: str, project: str, payload: Mapping[str, Any]) -> dict[str, Any]:
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
        if not version.startswith("prelabel"):
            return {"status": "ignored", "reason": f"the prediction is from another model ({version!r})"}
        try:
            outcomes = match_shapes(result_shapes(prediction["result"]), result_shapes(human),
                                    self.settings.match_iou, self.settings.unchanged_iou)
        except ValueError as exc:
            raise WebhookError(str(exc)) from exc
        lead_time = annotation.get("lead_time")
        self.store.record_annotation(action, project, task, annotation["id"], version, outcomes,
                                     float(lead_time) if isinstance(lead_time, (int, float)) else None)
        counts = Counter(outcome.outcome.value for outcome in outcomes)
        return {"status": "stored", "annotation": annotation["id"], "regions": dict(counts)}

    def fit(self, project: str, prompts: Sequence[LabelPrompt], default_threshold: float) -> Learned:
        """Fit on the project's feedback and store the result (the server predicts with the newest)."""
        configured = {p.name: default_threshold if p.box_threshold is None else p.box_threshold for p in prompts}
        previous = self.learned(project)
        current = {**configured, **{k: v for k, v in (previous.thresholds if previous else {}).items()
                                    if k in configured}}
        s = self.settings
        stored = self.store.outcomes(project)
        learned = fit_feedback([o.region for o in stored], current, s.beta, s.min_samples,
                               groups=[o.annotation for o in stored], current=previous, floors=configured)
        self.store.save_fit(project, learned.to_dict())
        decision = learned.metrics.get("validation", {}).get("calibration", {}).get("decision", "not fitted")
        log.info("project %s: thresholds %s, calibration: %s", project, learned.thresholds, decision)
        return learned

    def precision_cut(self, project: str, target: float, confidence_level: float = 0.95) -> PrecisionCut:
        """The confidence cut of the project's current fit whose held-out precision bound meets ``target``."""
        stored = self.store.outcomes(project)
        confidence, kept, groups = held_out_confidence([o.region for o in stored], [o.annotation for o in stored],
                                                       self.learned(project))
        return choose_cut(confidence, kept, target, confidence_level, groups)

    def learned(self, project: str) -> Learned | None:
        """The newest fit of a project."""
        data = self.store.latest_fit(project)
        return Learned.from_dict(data) if data else None

    def report(self, project: str) -> dict[str, Any]:
        """Analytics of one project (see :func:`prelabel.feedback.report.build_report`)."""
        return {"project": project, **build_report(self.store.outcomes(project), self.store.annotations(project))}


def project_id(payload: Mapping[str, Any]) -> str:
    """The Label Studio project id of a webhook or request body, as a string."""
    project = payload.get("project")
    if isinstance(project, dict):
        project = project.get("id")
    if project is None and isinstance(payload.get("annotation"), dict):
        project = payload["annotation"].get("project")
    text = str(project).split(".")[0] if project is not None else ""
    if not text.isdigit():
        raise WebhookError("the body names no Label Studio project id")
    return text


def _list(container: Mapping[str, Any], key: str) -> list[Any]:
    value = container.get(key)
    if not isinstance(value, list):
        raise WebhookError(f"{key!r} must be a list")
    return value
