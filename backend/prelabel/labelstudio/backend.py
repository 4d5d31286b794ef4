"""The Label Studio ML backend (Label Studio 1.23's contract): /health, /setup, /predict, /webhook, /train, ...

Routes live on a Blueprint served by the generic app of :mod:`prelabel.server.app`; the state of each
Label Studio project the backend has seen (where its Label Studio is, its labeling config, the
``model_version`` reported) is kept in a typed :class:`ProjectRegistry`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from prelabel.core.errors import BadRequest
from prelabel.feedback.fit import Learned, NotEnoughFeedback
from prelabel.feedback.service import FeedbackService, FeedbackSettings
from prelabel.feedback.store import FeedbackStore, store_exists
from prelabel.labelstudio.client import LabelStudioAccess, LabelStudioClient
from prelabel.labelstudio.config import LabelConfigError
from prelabel.labelstudio.predict.failures import stale_failures
from prelabel.labelstudio.predict.predictor import LabelStudioPredictor, PredictOutcome
from prelabel.labelstudio.predict.request import LabelConfigs, PredictRequest
from prelabel.labelstudio.predict.setup import PredictorSetup, VideoOptions, planned_version
from prelabel.labelstudio.task_images import TaskImageFetcher
from prelabel.labelstudio.webhooks import handle_webhook, normalise_project, project_id
from prelabel.pipeline import Labeler, exploration
from prelabel.pipeline.build import resolved
from prelabel.server.app import make_app
from prelabel.server.jobs import BackgroundJobs
from prelabel.server.limits import ModelGate
from prelabel.server.model_loading import ModelHolder
from prelabel.settings import Settings

log = logging.getLogger(__name__)

PREDICT_ENDPOINT = "labelstudio.predict"


@dataclass
class ProjectState:
    """What the backend knows of one Label Studio project."""

    url: str = ""
    api_key: str = ""
    label_config: str = ""
    version: str = ""  # the model_version last reported to Label Studio
    pointed: str = ""  # the model_version the project was set to (Data Manager score column)


class ProjectRegistry:
    """Projects by normalised id (Label Studio sends ``3``, ``"3"`` or ``"3.1690000000"``)."""

    def __init__(self) -> None:
        self._projects: dict[str, ProjectState] = {}
        self._lock = threading.Lock()

    def get(self, project: Any) -> ProjectState:
        with self._lock:
            return self._projects.setdefault(normalise_project(project), ProjectState())

    def versions(self) -> list[str]:
        with self._lock:
            return sorted({state.version for state in self._projects.values() if state.version})


class LabelStudioBackend:
    """The backend's state and request handlers; :meth:`blueprint` wires them to routes."""

    def __init__(self, settings: Settings, models: ModelHolder, gate: ModelGate) -> None:
        self.settings = settings
        self.models = models
        self.gate = gate
        self.fetcher = TaskImageFetcher.from_settings(settings)
        self.configs = LabelConfigs(settings.prompt_map())
        self.jobs = BackgroundJobs()
        self.projects = ProjectRegistry()
        self._feedback: FeedbackService | None = None  # opened on first use: an app that never learns writes no file

    # Feedback and what was learned.
    def feedback(self) -> FeedbackService:
        if self._feedback is None:
            self._feedback = FeedbackService(FeedbackStore(self.settings.feedback_db),
                                             FeedbackSettings.from_settings(self.settings))
        return self._feedback

    def learned_for(self, project: Any) -> Learned | None:
        key = normalise_project(project)
        if not key or not (self._feedback or store_exists(self.settings.feedback_db)):
            return None  # nothing learned yet; reading must not create the store
        return self.feedback().learned(key)

    def setup_for(self, project: Any, labeler: Labeler) -> PredictorSetup:
        """The models and settings of ``project``'s predictions (its latest fit included)."""
        return PredictorSetup(labeler, self.fetcher, self.settings.review_threshold, self.learned_for(project),
                              exploration(self.settings), VideoOptions.from_settings(self.settings))

    def predictor(self, project: Any) -> LabelStudioPredictor:
        return LabelStudioPredictor(self.setup_for(project, self.models.get(self.settings.predict_deadline_s)))

    def version_for(self, label_config: str, project: Any) -> str:
        """The model_version of ``project``'s predictions, without waiting for the models."""
        config = self.configs.parse(label_config)
        if self.models.labeler is not None:
            setup = self.setup_for(project, self.models.labeler)
            return setup.model_version(setup.for_project(config))
        return planned_version(self.settings, config, self.learned_for(project))

    def fit(self, project: str, label_config: str) -> dict[str, Any]:
        """Fit the project's feedback; /predict keeps serving with the previous fit meanwhile."""
        prompts = self.configs.parse(label_config).prompts
        learned = self.feedback().fit(project, prompts, self.settings.box_threshold)
        version = self.version_for(label_config, project)
        self.projects.get(project).version = version
        explore = exploration(self.settings)
        return {"status": "ok", "job": f"fit-{project}-{version}", "model_version": version, **learned.to_dict(),
                "exploration": explore.to_dict() if explore else None}

    def access_for(self, project: Any, payload: dict[str, Any] | None = None) -> LabelStudioAccess | None:
        """Configured URL/key win; otherwise what /setup sent for this project (hostname, access_token)."""
        known = self.projects.get(project)
        url = self.settings.label_studio_url or (payload or {}).get("hostname") or known.url
        key = self.settings.label_studio_api_key or (payload or {}).get("access_token") or known.api_key
        return LabelStudioAccess(url, key) if url else None

    def point_project_at(self, project: Any, access: LabelStudioAccess | None, version: str) -> None:
        """Set the project's model_version to ours once its predictions exist (Label Studio refuses a version
        without predictions), in a thread that retries while Label Studio is still storing them."""
        key = normalise_project(project)
        if not key or access is None or not access.api_key:
            return
        state = self.projects.get(key)
        if state.pointed == version:
            return
        state.pointed = version

        def run() -> None:
            try:
                LabelStudioClient.for_access(access).set_project_model_version(int(key), version)
            except Exception:  # logged; the next /predict tries again
                state.pointed = ""
                log.exception("could not set project %s's model_version", key)

        threading.Thread(target=run, name="prelabel-model-version", daemon=True).start()

    # Routes.
    def health(self) -> Response:
        return jsonify({"status": "UP", "model_class": "prelabel", "model_state": self.models.state,
                        "model_error": self.models.error})

    def setup(self) -> Response:
        payload = json_body()
        project = normalise_project(payload.get("project"))
        version = self.version_for(payload.get("schema", ""), project)
        access = self.access_for(project, payload)
        state = self.projects.get(project)
        if access:
            state.url, state.api_key = access.url, access.api_key
        state.version, state.label_config = version, payload.get("schema", "")
        return jsonify({"model_version": version})

    def predict(self) -> Response:
        asked = PredictRequest.parse(json_body(), self.configs)
        predictor = self.predictor(asked.project)
        access = self.access_for(asked.project)
        if asked.interactive:
            return jsonify({"results": [predictor.interactive(asked, access)]})
        outcome = predictor.predict_tasks(asked, access, time.monotonic() + self.settings.predict_deadline_s)
        if outcome.deferred:
            if access is None:
                log.warning("%d task(s) past the deadline and no Label Studio URL to push them to",
                            len(outcome.deferred))
            else:
                self.jobs.submit(lambda: self._push_rest(predictor, outcome, access))
        if any("result" in r for r in outcome.results):
            self.point_project_at(asked.project, access, outcome.model_version)
        stale = [i for task, r in zip(asked.tasks, outcome.results) if "result" in r and "error" not in r
                 for i in stale_failures(task)]
        if stale and access is not None:
            self.jobs.submit(lambda: self._delete_failures(stale, access))
        return jsonify({"results": outcome.results})

    @staticmethod
    def _delete_failures(predictions: list[int], access: LabelStudioAccess) -> None:
        """Drop the failure notes of tasks that are pre-labeled now (they would stay in the Data Manager)."""
        client = LabelStudioClient.for_access(access)
        for prediction in predictions:
            client.delete_prediction(prediction)
        log.info("deleted %d failure note(s) of tasks pre-labeled since", len(predictions))

    def _push_rest(self, predictor: LabelStudioPredictor, outcome: PredictOutcome, access: LabelStudioAccess) -> None:
        """Predict the deferred tasks in the background and store their predictions in Label Studio."""
        for task in outcome.deferred:
            with self.gate.hold():
                prediction = predictor.predict_task(task, outcome.config, access, outcome.model_version)
            if "result" in prediction:
                LabelStudioClient.for_access(access).push_prediction(int(task["id"]), prediction)

    def webhook(self) -> Response:
        """Annotation events feed the store; START_TRAINING fits (Label Studio 1.23 never calls /train)."""
        payload = json_body()
        if payload.get("action") == "START_TRAINING":
            project = payload.get("project") if isinstance(payload.get("project"), dict) else {}
            try:
                return jsonify(self.fit(project_id(payload), str(project.get("label_config", ""))))
            except (NotEnoughFeedback, LabelConfigError) as exc:  # not an error state for Label Studio
                return jsonify({"status": "skipped", "reason": str(exc)})
        outcome = handle_webhook(self.feedback(), payload)
        log.info("webhook %s: %s", payload.get("action"), outcome.get("status"))
        if outcome["status"] == "stored" and self.settings.fit_every > 0:
            project = project_id(payload)
            if self.feedback().store.annotations_since_last_fit(project) >= self.settings.fit_every:
                label_config = str((payload.get("project") or {}).get("label_config", ""))
                self.jobs.submit(lambda: self.fit(project, label_config))
        return jsonify(outcome)

    def train(self) -> Response | tuple[Response, int]:
        """Fit now: ``{"project": id, "label_config": xml}`` (the config defaults to the one /setup saw)."""
        payload = json_body()
        project = project_id(payload)
        label_config = payload.get("label_config") or self.projects.get(project).label_config
        if not label_config:
            raise BadRequest("pass 'label_config' (the project's labeling config XML); /setup has not seen it")
        try:
            return jsonify(self.fit(project, label_config))
        except NotEnoughFeedback as exc:
            return jsonify({"error": str(exc)}), 409

    def report(self) -> Response:
        """Labeling analytics of ``?project=ID``: acceptance, corrections, precision/recall per version."""
        return jsonify(self.feedback().report(project_id(request.args)))

    def versions(self) -> Response:
        return jsonify({"versions": self.projects.versions()})

    def blueprint(self) -> Blueprint:
        routes = Blueprint("labelstudio", __name__)
        routes.add_url_rule("/health", "health", self.health, methods=["GET"])
        routes.add_url_rule("/", "root", self.health, methods=["GET"])
        routes.add_url_rule("/setup", "setup", self.setup, methods=["POST"])
        routes.add_url_rule("/predict", "predict", self.predict, methods=["POST"])
        routes.add_url_rule("/webhook", "webhook", self.webhook, methods=["POST"])
        routes.add_url_rule("/train", "train", self.train, methods=["POST"])
        routes.add_url_rule("/report", "report", self.report, methods=["GET"])
        routes.add_url_rule("/versions", "versions", self.versions, methods=["GET"])
        return routes


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    return payload


def create_app(settings: Settings | None = None, labeler: Labeler | None = None) -> Flask:
    """The ML backend app; pass ``labeler`` to reuse loaded models (tests), else they load in the background.

    ``auto`` (dtype, SAM runtime) is resolved here, once, so that /setup computes the planned ``model_version``
    from plain settings, without torch, from the first request on (``prelabel serve`` has resolved it already,
    before binding its port, and this is then a no-op).
    """
    settings = resolved(settings or Settings.load())
    models = ModelHolder(settings, labeler)
    gate = ModelGate(settings.max_in_flight, settings.max_queue, settings.queue_timeout_s)
    app = make_app(settings, gate, lambda: models.labeler, {PREDICT_ENDPOINT})
    backend = LabelStudioBackend(settings, models, gate)
    app.register_blueprint(backend.blueprint())
    app.extensions["prelabel"] = backend
    return app
