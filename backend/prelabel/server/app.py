"""Flask app factory implementing the Label Studio ML backend contract (Label Studio 1.23)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from prelabel.feedback.fit import Learned
from prelabel.feedback.service import FeedbackService, WebhookError, project_id
from prelabel.feedback.store import FeedbackStore
from prelabel.formats.labelstudio import LabelConfigError, parse_label_config
from prelabel.models.random_weights import RANDOM_SPECS
from prelabel.pipeline import Labeler, model_version
from prelabel.server.limits import ModelGate, install_limits
from prelabel.server.ls_push import BackgroundJobs, push_prediction, set_project_model_version
from prelabel.server.observability import install_observability
from prelabel.server.openapi import install_openapi
from prelabel.server.predictor import BadRequest, LabelStudioPredictor
from prelabel.server.security import install_auth
from prelabel.server.task_images import LabelStudioAccess, TaskImageFetcher
from prelabel.settings import Settings

log = logging.getLogger(__name__)


class ModelHolder:
    """Loads the Labeler once, in a background thread, so /health and /setup answer at once meanwhile."""

    def __init__(self, settings: Settings, labeler: Labeler | None = None) -> None:
        self.labeler = labeler
        self.error: str | None = None
        self._ready = threading.Event()
        if labeler is not None:
            self._ready.set()
        else:
            threading.Thread(target=self._load, args=(settings,), name="prelabel-load", daemon=True).start()

    def _load(self, settings: Settings) -> None:
        try:
            self.labeler = Labeler.from_specs(settings.detector, settings.segmenter, settings.device, settings.dtype,
                                              settings.labeler_config(), settings.cache_mb, settings.sam_runtime)
        except Exception as exc:  # reported by /health and every predict
            log.exception("model loading failed")
            self.error = str(exc)
        finally:
            self._ready.set()

    @property
    def state(self) -> str:
        return "error" if self.error else "ready" if self.labeler else "loading"

    def get(self, timeout: float) -> Labeler:
        if not self._ready.wait(timeout) or self.labeler is None:
            raise ModelUnavailable(self.error or "models are still loading; try again shortly")
        return self.labeler


class ModelUnavailable(RuntimeError):
    """Answered with 503 and Retry-After."""


def create_app(settings: Settings | None = None, labeler: Labeler | None = None) -> Flask:
    """The ML backend app; pass ``labeler`` to reuse loaded models (tests), else they load in the background."""
    settings = settings or Settings.load()
    app = Flask("prelabel")
    models = ModelHolder(settings, labeler)
    fetcher = TaskImageFetcher.from_settings(settings)
    jobs = BackgroundJobs()
    projects: dict[str, dict[str, Any]] = {}  # project id -> access, label config, last reported model_version
    feedback_service: list[FeedbackService] = []  # opened on first use, so apps that never learn write no file
    gate = ModelGate(settings.max_in_flight, settings.max_queue, settings.queue_timeout_s)
    app.extensions["prelabel"] = {"models": models, "jobs": jobs, "projects": projects, "gate": gate}
    install_observability(app, gate, lambda: models.labeler)  # first: request ids for everything after
    install_auth(app, settings)
    install_limits(app, gate)
    install_openapi(app)

    def feedback() -> FeedbackService:
        if not feedback_service:
            feedback_service.append(FeedbackService(FeedbackStore(settings.feedback_db), settings.feedback_settings()))
        return feedback_service[0]

    def learned_for(project: Any) -> Learned | None:
        key = str(project or "").split(".")[0]
        if not key.isdigit() or not (feedback_service or Path(settings.feedback_db).exists()):
            return None  # nothing learned yet; reading must not create the store
        return feedback().learned(key)

    def predictor(project: Any) -> LabelStudioPredictor:
        return LabelStudioPredictor(models.get(settings.predict_deadline_s), fetcher, settings.prompt_map(),
                                    settings.review_threshold, learned_for(project))

    def version_for(label_config: str, project: Any) -> str:
        """model_version without waiting for the models: specs, prompts, thresholds and the project's fit."""
        learned = learned_for(project)
        config = parse_label_config(label_config, settings.prompt_map())
        prompts = learned.apply(config.prompts) if learned else config.prompts
        calibration = learned.scoring() if learned else None
        if models.labeler is not None:
            return models.labeler.model_version(prompts, calibration)
        random = settings.detector in RANDOM_SPECS or settings.segmenter in RANDOM_SPECS
        return model_version(settings.detector, settings.segmenter, random, prompts, settings.labeler_config(),
                             calibration)

    def fit(project: str, label_config: str) -> dict[str, Any]:
        """Fit the project's feedback; /predict keeps serving with the previous fit meanwhile."""
        prompts = parse_label_config(label_config, settings.prompt_map()).prompts
        learned = feedback().fit(project, prompts, settings.box_threshold)
        version = version_for(label_config, project)
        projects.setdefault(project, {})["version"] = version
        return {"status": "ok", "job": f"fit-{project}-{version}", "model_version": version, **learned.to_dict()}

    def access_for(project: str | None, payload: dict[str, Any] | None = None) -> LabelStudioAccess | None:
        """Configured URL/key win; otherwise what /setup sent for this project (hostname, access_token)."""
        known = projects.get(str(project).split(".")[0], {})
        url = settings.label_studio_url or (payload or {}).get("hostname") or known.get("url", "")
        key = settings.label_studio_api_key or (payload or {}).get("access_token") or known.get("api_key", "")
        return LabelStudioAccess(url, key) if url else None

    def json_body() -> dict[str, Any]:
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            raise BadRequest("the request body must be a JSON object")
        return payload

    @app.get("/health")
    @app.get("/")
    def health() -> Response:
        return jsonify({"status": "UP", "model_class": "prelabel", "model_state": models.state,
                        "model_error": models.error})

    @app.post("/setup")
    def setup() -> Response:
        payload = json_body()
        project = str(payload.get("project", "")).split(".")[0]
        version = version_for(payload.get("schema", ""), project)
        access = access_for(project, payload)
        known = projects.setdefault(project, {})
        if access:
            known.update(url=access.url, api_key=access.api_key)
        known.update(version=version, label_config=payload.get("schema", ""))
        return jsonify({"model_version": version})

    def point_project_at(project: Any, access: LabelStudioAccess | None, version: str) -> None:
        """Set the project's model_version to ours once its predictions exist (Label Studio refuses a version
        without predictions), in a thread that retries while Label Studio is still storing them."""
        project = str(project or "").split(".")[0]
        known = projects.setdefault(project, {})
        if not project.isdigit() or access is None or not access.api_key or known.get("pointed") == version:
            return
        known["pointed"] = version

        def run() -> None:
            try:
                set_project_model_version(access, int(project), version)
            except Exception:  # logged; the next /predict tries again
                known.pop("pointed", None)
                log.exception("could not set project %s's model_version", project)

        threading.Thread(target=run, name="prelabel-model-version", daemon=True).start()

    @app.post("/predict")
    def predict() -> Response:
        payload = json_body()
        tasks = payload.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("'tasks' must be a list of task objects")
        predictor_ = predictor(payload.get("project"))
        config = predictor_.config(payload.get("label_config", ""))
        access = access_for(payload.get("project"))
        context = (payload.get("params") or {}).get("context") or {}
        if context.get("result"):
            if len(tasks) != 1:
                raise BadRequest("an interactive request must hold exactly one task")
            return jsonify({"results": [predictor_.interactive(tasks[0], config, context, access)]})
        outcome = predictor_.predict_tasks(tasks, config, access, time.monotonic() + settings.predict_deadline_s)
        if outcome.deferred:
            if access is None:
                log.warning("%d task(s) past the deadline and no Label Studio URL to push them to",
                            len(outcome.deferred))
            else:
                def push_rest(tasks_left=outcome.deferred) -> None:
                    for task in tasks_left:
                        with gate.hold():
                            prediction = predictor_.predict_task(task, config, access)
                        if "result" in prediction:
                            push_prediction(access, int(task["id"]), prediction)
                jobs.submit(push_rest)
        if any("result" in r for r in outcome.results):
            point_project_at(payload.get("project"), access, predictor_.model_version(config))
        return jsonify({"results": outcome.results})

    @app.post("/webhook")
    def webhook() -> Response:
        """Annotation events feed the store; START_TRAINING fits (Label Studio 1.23 never calls /train)."""
        payload = json_body()
        if payload.get("action") == "START_TRAINING":
            project = payload.get("project") if isinstance(payload.get("project"), dict) else {}
            try:
                return jsonify(fit(project_id(payload), str(project.get("label_config", ""))))
            except (LabelConfigError, ValueError) as exc:  # too little feedback: not an error state for LS
                return jsonify({"status": "skipped", "reason": str(exc)})
        outcome = feedback().handle(payload)
        log.info("webhook %s: %s", payload.get("action"), outcome.get("status"))
        if outcome["status"] == "stored" and settings.fit_every > 0:
            project = project_id(payload)
            if feedback().store.annotations_since_last_fit(project) >= settings.fit_every:
                label_config = str((payload.get("project") or {}).get("label_config", ""))
                jobs.submit(lambda: fit(project, label_config))
        return jsonify(outcome)

    @app.post("/train")
    def train() -> Response | tuple[Response, int]:
        """Fit now: ``{"project": id, "label_config": xml}`` (the config defaults to the one /setup saw)."""
        payload = json_body()
        project = project_id(payload)
        label_config = payload.get("label_config") or projects.get(project, {}).get("label_config")
        if not label_config:
            raise BadRequest("pass 'label_config' (the project's labeling config XML); /setup has not seen it")
        try:
            return jsonify(fit(project, label_config))
        except LabelConfigError:
            raise
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 409

    @app.get("/report")
    def report() -> Response:
        """Labeling analytics of ``?project=ID``: acceptance, corrections, precision/recall per version."""
        return jsonify(feedback().report(project_id(request.args)))

    @app.get("/versions")
    def versions() -> Response:
        return jsonify({"versions": sorted({p["version"] for p in projects.values() if "version" in p})})

    @app.errorhandler(BadRequest)
    @app.errorhandler(LabelConfigError)
    @app.errorhandler(WebhookError)
    def bad_request(exc: ValueError) -> tuple[Response, int]:
        log.warning("400: %s", exc)
        return jsonify({"error": str(exc)}), 400

    @app.errorhandler(ModelUnavailable)
    def unavailable(exc: ModelUnavailable) -> tuple[Response, int, dict[str, str]]:
        return jsonify({"error": str(exc)}), 503, {"Retry-After": "10"}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": exc.description}), exc.code or 500

    return app
