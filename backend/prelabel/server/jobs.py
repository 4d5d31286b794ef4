"""One worker thread running queued jobs in order (background pushes, fits); a failing job is logged, never fatal."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class BackgroundJobs:
    """Jobs run one at a time, in submission order, in a daemon thread."""

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
