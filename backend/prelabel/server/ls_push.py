"""Write predictions and the project's model_version into Label Studio through label-studio-sdk."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

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


def _predictions_not_stored_yet(exc: BaseException) -> bool:
    """Label Studio refuses a model_version that no prediction has yet (400 on ``model_version``)."""
    from label_studio_sdk.core.api_error import ApiError

    return isinstance(exc, ApiError) and exc.status_code == 400 and "model_version" in str(exc.body)


@retry(retry=retry_if_exception(_predictions_not_stored_yet), stop=stop_after_delay(60),
       wait=wait_exponential(multiplier=0.5, max=5), reraise=True)
def set_project_model_version(access: LabelStudioAccess, project_id: int, version: str) -> None:
    """Point the project at ``version`` so the Data Manager's prediction score column and sort use it.

    Label Studio sets it to the backend's title when the backend is connected and accepts only a version
    that has predictions, so this runs after /predict, retries while they are being stored, and patches
    only when the project points elsewhere.
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
