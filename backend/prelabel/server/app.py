"""Flask app factory implementing the Label Studio ML backend contract (Label Studio 1.23)."""

from __future__ import annotations

import base64
import hmac
import logging
import threading
import time
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from prelabel.formats.labelstudio import LabelConfigError, parse_label_config
from prelabel.models.random_weights import RANDOM_SPECS
from prelabel.pipeline import Labeler, model_version
from prelabel.server.ls_push import BackgroundJobs, push_prediction, set_project_model_version
from prelabel.server.predictor import BadRequest, LabelStudioPredictor
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
    fetcher = TaskImageFetcher(settings.fetch_timeout_s, max_pixels=settings.max_pixels)
    jobs = BackgroundJobs()
    projects: dict[str, dict[str, Any]] = {}  # project id -> access and last reported model_version
    app.extensions["prelabel"] = {"models": models, "jobs": jobs, "projects": projects}

    def predictor() -> LabelStudioPredictor:
        return LabelStudioPredictor(models.get(settings.predict_deadline_s), fetcher, settings.prompt_map())

    def version_for(label_config: str) -> str:
        """model_version without waiting for the models: it depends only on specs, prompts and thresholds."""
        config = parse_label_config(label_config, settings.prompt_map())
        if models.labeler is not None:
            return models.labeler.model_version(config.prompts)
        random = settings.detector in RANDOM_SPECS or settings.segmenter in RANDOM_SPECS
        return model_version(settings.detector, settings.segmenter, random, config.prompts, settings.labeler_config())

    def access_for(project: str | None, payload: dict[str, Any] | None = None) -> LabelStudioAccess | None:
        """Configured URL/key win; otherwise what /setup sent for this project (hostname, access_token)."""
        known = projects.get(str(project).split(".")[0], {})
        url = settings.label_studio_url or (payload or {}).get("hostname") or known.get("url", "")
        key = settings.label_studio_api_key or (payload or {}).get("access_token") or known.get("api_key", "")
        return LabelStudioAccess(url, key) if url else None

    @app.before_request
    def check_auth() -> Response | None:
        if not settings.basic_auth_user or request.path == "/webhook":
            return None  # Label Studio sends no credentials with webhooks
        expected = base64.b64encode(f"{settings.basic_auth_user}:{settings.basic_auth_pass}".encode()).decode()
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Basic {expected}".encode()):
            return Response('{"error": "authentication required"}', 401, mimetype="application/json",
                            headers={"WWW-Authenticate": 'Basic realm="prelabel"'})
        return None

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
        version = version_for(payload.get("schema", ""))
        project = str(payload.get("project", "")).split(".")[0]
        access = access_for(project, payload)
        known = projects.setdefault(project, {})
        if access:
            known.update(url=access.url, api_key=access.api_key)
        known["version"] = version
        if project.isdigit() and access and access.api_key:
            jobs.submit(lambda: set_project_model_version(access, int(project), version))
        return jsonify({"model_version": version})

    @app.post("/predict")
    def predict() -> Response:
        payload = json_body()
        tasks = payload.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("'tasks' must be a list of task objects")
        predictor_ = predictor()
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
                        prediction = predictor_.predict_task(task, config, access)
                        if "result" in prediction:
                            push_prediction(access, int(task["id"]), prediction)
                jobs.submit(push_rest)
        return jsonify({"results": outcome.results})

    @app.post("/webhook")
    def webhook() -> Response:
        payload = json_body()
        action = payload.get("action")
        log.info("webhook %s", action)
        return jsonify({"status": "ok", "action": action})

    @app.post("/train")
    def train() -> Response:
        json_body()
        return jsonify({"status": "ok"})

    @app.get("/versions")
    def versions() -> Response:
        return jsonify({"versions": sorted({p["version"] for p in projects.values() if "version" in p})})

    @app.errorhandler(BadRequest)
    @app.errorhandler(LabelConfigError)
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
