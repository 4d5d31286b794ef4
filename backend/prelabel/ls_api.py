"""The few Label Studio REST calls prelabel's demo, ranking and tests need, as a user's script would make them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests


class LabelStudioAPI:
    """A token-authenticated session on one Label Studio; errors raise with the status and body."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, timeout: float = 300, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.url}{path}", timeout=timeout, **kwargs)
        if not response.ok:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def create_project(self, title: str, label_config: str) -> int:
        return int(self.call("POST", "/api/projects", json={"title": title, "label_config": label_config})["id"])

    def import_images(self, project_id: int, paths: Sequence[Path]) -> list[int]:
        """Upload files, one distinct multipart field per file (a repeated name imports only one)."""
        files = {f"file{i}": (p.name, p.read_bytes()) for i, p in enumerate(paths)}
        self.call("POST", f"/api/projects/{project_id}/import", files=files)
        return [int(t["id"]) for t in self.tasks(project_id)]

    def tasks(self, project_id: int, view: int | None = None, query: dict[str, Any] | None = None,
              page_size: int = 500) -> list[dict[str, Any]]:
        """Every task of a project (all fields, predictions included), page by page, in the view's order."""
        params: dict[str, Any] = {"project": project_id, "fields": "all", "page_size": page_size}
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

    def save_view(self, project_id: int, title: str, data: dict[str, Any]) -> int:
        """Create the Data Manager tab ``title``, or update it when the project has one of that title."""
        views = self.call("GET", "/api/dm/views", params={"project": project_id})
        body = {"project": project_id, "data": {**data, "title": title}}
        for view in views:
            if (view.get("data") or {}).get("title") == title:
                return int(self.call("PATCH", f"/api/dm/views/{view['id']}", json=body)["id"])
        return int(self.call("POST", "/api/dm/views", json=body)["id"])

    def connect_backend(self, project_id: int, backend_url: str, title: str = "prelabel") -> int:
        ml = self.call("POST", "/api/ml", json={"url": backend_url, "project": project_id, "title": title,
                                                "is_interactive": True, "auth_method": "NONE"})
        return int(ml["id"])

    def retrieve_predictions(self, project_id: int, task_ids: Sequence[int] | None = None) -> Any:
        """The Data Manager's "Retrieve Predictions" action (LS calls /setup then one /predict)."""
        selected = {"all": True, "excluded": []} if task_ids is None else {"all": False, "included": list(task_ids)}
        return self.call("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}",
                         json={"selectedItems": selected})

    def predictions(self, task_id: int) -> list[dict[str, Any]]:
        return self.call("GET", f"/api/predictions?task={task_id}")
