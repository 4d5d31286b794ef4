"""Annotators' corrections -> matched outcomes in the store; fits and reports on demand. No tool in here."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prelabel.core.labels import LabelPrompt, box_cuts
from prelabel.core.shapes import Shape
from prelabel.feedback.accept import PrecisionCut, choose_cut, held_out_confidence
from prelabel.feedback.fit import Learned, fit_feedback
from prelabel.feedback.matching import match_shapes
from prelabel.feedback.report import build_report
from prelabel.feedback.store import FeedbackStore
from prelabel.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedbackSettings:
    """Matching and fitting knobs."""

    match_iou: float = 0.5
    unchanged_iou: float = 0.95
    beta: float = Settings.fit_beta  # the Settings' defaults
    min_samples: int = Settings.fit_min_samples

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedbackSettings:
        return cls(beta=settings.fit_beta, min_samples=settings.fit_min_samples)


class FeedbackService:
    """Records what annotators did with prelabel's predictions and learns from it."""

    def __init__(self, store: FeedbackStore, settings: FeedbackSettings | None = None) -> None:
        self.store = store
        self.settings = settings or FeedbackSettings()

    def record_annotation(
        self, action: str, project: str, task: int, annotation: int, model_version: str,
        predicted: Sequence[Shape], human: Sequence[Shape], lead_time: float | None = None,
        version: str | None = None,
    ) -> tuple[str, dict[str, int]]:
        """Match an annotation's shapes to the prediction's, store the outcomes (idempotent by ``version``, see
        :meth:`FeedbackStore.record_annotation`); the store's status and the counts by outcome."""
        outcomes = match_shapes(predicted, human, self.settings.match_iou, self.settings.unchanged_iou)
        status = self.store.record_annotation(action, project, task, annotation, model_version, outcomes,
                                              lead_time, version)
        return status, dict(Counter(outcome.outcome.value for outcome in outcomes))

    def forget_annotations(self, action: str, project: str, annotations: Sequence[int]) -> int:
        """Forget deleted annotations; returns how many were stored."""
        return self.store.delete_annotations(action, project, annotations)

    def fit(self, project: str, prompts: Sequence[LabelPrompt], default_threshold: float) -> Learned:
        """Fit on the project's feedback, validated on held-out annotations against the current fit, and store
        the result (the server predicts with the newest; a refused fit keeps the current model)."""
        configured = dict(zip((p.name for p in prompts), box_cuts(prompts, default_threshold).tolist(), strict=True))
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
