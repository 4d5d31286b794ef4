"""Write predictions and the project's model_version into Label Studio through label-studio-sdk."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from prelabel.server.task_images import LabelStudioAccess

log = logging.getLogger(__name__)


def sdk_client(access: LabelStudioAccess) -> Any:
    """A label-studio-sdk client; it sends legacy tokens as ``Token`` and refreshes personal access tokens."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=access.url, api_key=access.api_key)


def push_prediction(access: LabelStudioAccess, task_id: int, prediction: dict[str, Any]) -> None:
    """Store one prediction on a task."""
    sdk_client(access).predictions.create(
        task=task_id, result=prediction["result"], score=prediction.get("score"),
        model_version=prediction["model_version"],
    )


def set_project_model_version(access: LabelStudioAccess, project_id: int, version: str) -> None:
    """Point the project at ``version`` so the Data Manager's prediction score column and sort use it.

    Label Studio itself sets it to the backend's title when the backend is connected, so this checks
    on every /setup and patches only when it differs.
    """
    client = sdk_client(access)
    if client.projects.get(project_id).model_version != version:
        client.projects.update(project_id, model_version=version)
        log.info("project %s: model_version set to %s", project_id, version)


class BackgroundJobs:
    """One worker thread running queued jobs in order; a failing job is logged, never fatal."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="prelabel-jobs", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                job()
            except Exception:  # a job's failure must not kill the worker
                log.exception("background job failed")
            finally:
                self._queue.task_done()
