"""The one client of a Label Studio server: label-studio-sdk where it covers the call, the REST API for the rest.

Authentication is handled once, here: a legacy token is sent as ``Token``; a personal access token (a JWT
refresh token) is exchanged at ``/api/token/refresh`` for an access token sent as ``Bearer`` (label-studio-sdk
does the same for its own calls). Errors raise :class:`LabelStudioError` with the status and body.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import requests
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from prelabel.core.errors import ExitCode, PrelabelError

log = logging.getLogger(__name__)
LOCAL_BACKENDS_FIX = ("Label Studio refuses ML backends on loopback and private addresses unless it runs with "
                      "ML_BLOCK_LOCAL_IP=false (its calls to the backend) and SSRF_PROTECTION_ENABLED=false (the "
                      "webhook it creates for the backend): restart it as `ML_BLOCK_LOCAL_IP=false "
                      "SSRF_PROTECTION_ENABLED=false label-studio start` (Docker: -e for each)")


class LabelStudioError(PrelabelError):
    """Label Studio could not be installed or started, or refused a call (``status``: its HTTP status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioUnreachable(LabelStudioError):
    """No answer from Label Studio at all (down, wrong URL, network)."""

    exit_code = ExitCode.UNAVAILABLE


@dataclass(frozen=True)
class LabelStudioAccess:
    """Where Label Studio is and how to authenticate: a legacy token or a personal access (refresh) token."""

    url: str
    api_key: str

    @property
    def is_personal_access_token(self) -> bool:
        return self.api_key.count(".") == 2  # a JWT refresh token


class LabelStudioClient:
    """A session on one Label Studio (``LABEL_STUDIO_URL`` + ``LABEL_STUDIO_API_KEY``)."""

    def __init__(self, url: str, api_key: str, timeout_s: float = 300) -> None:
        self.access = LabelStudioAccess(url.rstrip("/"), api_key)
        self.url = self.access.url
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self._bearer: str | None = None
        self._lock = threading.Lock()
        self._label_configs: dict[int, str] = {}

    @classmethod
    def for_access(cls, access: LabelStudioAccess) -> LabelStudioClient:
        """The shared client of ``access`` (one per URL and key, so a refreshed token is reused)."""
        return _shared_client(access.url.rstrip("/"), access.api_key)

    @cached_property
    def sdk(self) -> Any:
        """A ``label_studio_sdk.LabelStudio`` (the ``[labelstudio]`` extra)."""
        from label_studio_sdk import LabelStudio  # optional: the [labelstudio] extra, 0.6 s to import

        return LabelStudio(base_url=self.url, api_key=self.access.api_key)

    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header for this server (empty without a key)."""
        if not self.access.api_key:
            return {}
        if not self.access.is_personal_access_token:
            return {"Authorization": f"Token {self.access.api_key}"}
        with self._lock:
            if self._bearer is None:
                self._bearer = self._refresh()
            return {"Authorization": f"Bearer {self._bearer}"}

    def _refresh(self) -> str:
        try:
            response = self.session.post(f"{self.url}/api/token/refresh", json={"refresh": self.access.api_key},
                                         timeout=min(self.timeout_s, 30))
            response.raise_for_status()
            return str(response.json()["access"])
        except (requests.RequestException, KeyError) as exc:  # requests' JSONDecodeError is a RequestException
            raise LabelStudioError(f"could not exchange the personal access token at {self.url}: {exc}; "
                                   f"check LABEL_STUDIO_API_KEY") from exc

    def call(self, method: str, path: str, timeout: float | None = None, **kwargs: Any) -> Any:
        """One REST call; the JSON answer (None when empty)."""
        try:
            response = self.session.request(method, f"{self.url}{path}", headers=self.auth_headers(),
                                            timeout=timeout or self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise LabelStudioUnreachable(f"{method} {self.url}{path} failed: {exc.__class__.__name__}; is Label "
                                         f"Studio running there? (LABEL_STUDIO_URL)") from exc
        if not response.ok:
            raise LabelStudioError(f"{method} {path} -> {response.status_code}: {response.text[:500]}",
                                   response.status_code)
        return response.json() if response.content else None

    # Projects and tasks.
    def create_project(self, title: str, label_config: str) -> int:
        return int(self.call("POST", "/api/projects", json={"title": title, "label_config": label_config})["id"])

    def projects(self) -> list[dict[str, Any]]:
        """Every project (id, title, ...)."""
        reply = self.call("GET", "/api/projects", params={"page_size": 1000})
        return list(reply["results"] if isinstance(reply, dict) else reply)

    def label_config(self, project: int) -> str:
        """The project's labeling config XML (fetched once per client)."""
        if project not in self._label_configs:
            self._label_configs[project] = str(self.sdk.projects.get(project).label_config)
        return self._label_configs[project]

    def import_images(self, project: int, paths: Sequence[Path]) -> list[int]:
        """Upload files, one distinct multipart field per file (a repeated name imports only one)."""
        files = {f"file{i}": (p.name, p.read_bytes()) for i, p in enumerate(paths)}
        self.call("POST", f"/api/projects/{project}/import", files=files)
        return [int(t["id"]) for t in self.tasks(project)]

    def tasks(self, project: int, view: int | None = None, query: dict[str, Any] | None = None,
              page_size: int = 500) -> list[dict[str, Any]]:
        """Every task of a project (all fields, predictions included), page by page, in the view's order."""
        params: dict[str, Any] = {"project": project, "fields": "all", "page_size": page_size}
        if view is not None:
            params["view"] = view
        if query is not None:
            params["query"] = json.dumps(query)
        tasks: list[dict[str, Any]] = []
        page = 1
        while True:
            reply = self.call("GET", "/api/tasks", params={**params, "page": page})
            tasks += reply["tasks"]
            if not reply["tasks"] or len(tasks) >= reply.get("total", 0):
                return tasks
            page += 1

    # Data Manager and the ML backend connection.
    def save_view(self, project: int, title: str, data: dict[str, Any]) -> int:
        """Create the Data Manager tab ``title``, or update it when the project has one of that title."""
        views = self.call("GET", "/api/dm/views", params={"project": project})
        body = {"project": project, "data": {**data, "title": title}}
        for view in views:
            if (view.get("data") or {}).get("title") == title:
                return int(self.call("PATCH", f"/api/dm/views/{view['id']}", json=body)["id"])
        return int(self.call("POST", "/api/dm/views", json=body)["id"])

    def connect_backend(self, project: int, backend_url: str, title: str = "prelabel") -> int:
        """Connect the ML backend at ``backend_url`` to ``project`` (Label Studio calls its /health and /setup
        first); the id of the ML backend. Label Studio's refusals become errors that name the fix."""
        try:
            ml = self.call("POST", "/api/ml", json={"url": backend_url, "project": project, "title": title,
                                                    "is_interactive": True, "auth_method": "NONE"})
        except LabelStudioError as exc:
            if exc.status == 403 and "reserved network address" in str(exc):
                raise LabelStudioError(f"Label Studio refused {backend_url}: the URL resolves to a reserved network "
                                       f"address. {LOCAL_BACKENDS_FIX}; then connect again", 403) from exc
            if exc.status == 400 and "health check failed" in str(exc):
                raise LabelStudioError(f"Label Studio at {self.url} cannot reach the backend at {backend_url}: is "
                                       f"`prelabel serve` running, and is this the address Label Studio can reach "
                                       f"(from a Label Studio in Docker, not 127.0.0.1)?", 400) from exc
            raise
        return int(ml["id"])

    def ml_backends(self, project: int) -> list[dict[str, Any]]:
        """The ML backends connected to ``project`` (Label Studio refreshes their state on this call)."""
        return list(self.call("GET", "/api/ml", params={"project": project}))

    def retrieve_predictions(self, project: int, task_ids: Sequence[int] | None = None) -> Any:
        """The Data Manager's "Retrieve Predictions" action (Label Studio calls /setup then one /predict)."""
        selected = {"all": True, "excluded": []} if task_ids is None else {"all": False, "included": list(task_ids)}
        return self.call("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
                         json={"selectedItems": selected})

    # Predictions.
    def predictions(self, task: int) -> list[dict[str, Any]]:
        return self.call("GET", f"/api/predictions?task={task}")

    def push_prediction(self, task: int, prediction: dict[str, Any]) -> None:
        """Store one prediction on a task (label-studio-sdk)."""
        self.sdk.predictions.create(task=task, result=prediction["result"], score=prediction.get("score"),
                                    model_version=prediction["model_version"])

    def delete_prediction(self, prediction: int) -> None:
        self.call("DELETE", f"/api/predictions/{prediction}")

    @retry(retry=retry_if_exception(lambda exc: _predictions_not_stored_yet(exc)), stop=stop_after_delay(60),
           wait=wait_exponential(multiplier=0.5, max=5), reraise=True)
    def set_project_model_version(self, project: int, version: str) -> None:
        """Point the project at ``version`` so the Data Manager's prediction score column and sort use it.

        Label Studio sets it to the backend's title when the backend is connected and accepts only a version
        that has predictions, so this runs after /predict, retries while they are being stored, and patches
        only when the project points elsewhere.
        """
        if self.sdk.projects.get(project).model_version != version:
            self.sdk.projects.update(project, model_version=version)
            log.info("project %s: model_version set to %s", project, version)


def _predictions_not_stored_yet(exc: BaseException) -> bool:
    """Label Studio refuses a model_version that no prediction has yet (400 on ``model_version``)."""
    from label_studio_sdk.core.api_error import ApiError  # optional: the [labelstudio] extra

    return isinstance(exc, ApiError) and exc.status_code == 400 and "model_version" in str(exc.body)


@lru_cache(maxsize=16)
def _shared_client(url: str, api_key: str) -> LabelStudioClient:
    return LabelStudioClient(url, api_key)
