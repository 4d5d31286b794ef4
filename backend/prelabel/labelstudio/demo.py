"""The one-command demo: a local Label Studio, the backend connected, a demo project pre-labeled.

The helpers here drive Label Studio only through its public REST API, as a user's script would; the
end-to-end tests use the same helpers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from prelabel.core.errors import PrelabelError
from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.local import LocalLabelStudio, ensure_label_studio, free_port, stop_process_group
from prelabel.models.specs import is_random
from prelabel.settings import Settings

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_TITLE = "prelabel demo"
DEMO_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <RectangleLabels name="bbox" toName="image">
    <Label value="cat" background="#ff8800"/><Label value="cup" predicted_values="coffee cup,mug" background="#00aaff"/>
    <Label value="person" background="#22cc22"/><Label value="rocket" background="#cc22cc"/>
  </RectangleLabels>
  <PolygonLabels name="polygon" toName="image">
    <Label value="cat" background="#ff8800"/><Label value="cup" predicted_values="coffee cup,mug" background="#00aaff"/>
    <Label value="person" background="#22cc22"/><Label value="rocket" background="#cc22cc"/>
  </PolygonLabels>
</View>"""


class BackendProcess:
    """``prelabel serve`` in its own process group on loopback; stopped by PID."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "prelabel.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 300) -> dict[str, Any]:
        """Wait until /health reports the models loaded; raise :class:`BackendError` with the reason otherwise."""
        deadline = time.monotonic() + timeout
        reason = f"it did not answer /health within {timeout:.0f} s"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                reason = f"it exited with code {self.proc.returncode}: {last_error(self.log_path)}"
                break
            try:
                health = requests.get(f"{self.url}/health", timeout=2).json()
                if health.get("model_state") == "ready":
                    return health
                if health.get("model_state") == "error":
                    reason = str(health.get("model_error"))
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise BackendError(f"the backend at {self.url} did not start: {reason} (log: {self.log_path})")

    def stop(self, grace: float = 15) -> None:
        stop_process_group(self.proc, grace)


class BackendError(PrelabelError):
    """The backend process could not start or load its models."""


def last_error(log_path: Path) -> str:
    """The last ERROR message of a backend log (JSON lines or text), else its last line."""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if "ERROR" in line or "Error" in line:
                return line.strip()
            continue
        if isinstance(record, dict) and record.get("level") == "ERROR":
            return str(record.get("message"))
    return lines[-1].strip() if lines else "(empty log)"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(workdir: Path, port: int = 8080, images: Sequence[Path] | None = None) -> None:
    """Start Label Studio and the backend, pre-label a demo project, and keep both running until Ctrl-C.

    A rerun with the same ``workdir`` reuses Label Studio's data and the demo project, reconnected to the
    new backend (no second project, no backend left pointing at a stopped process).
    """
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops Label Studio and the backend too
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings.load()
    venv = Path(os.environ.get("PRELABEL_LS_VENV", ".venv-ls"))
    executable = ensure_label_studio(venv)
    random_models = is_random(settings.detector) and is_random(settings.segmenter)
    with LocalLabelStudio(executable, workdir / "label-studio", port=port) as ls:
        print(f"Label Studio is up at {ls.url}", flush=True)
        backend = BackendProcess({"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token},
                                 workdir / "backend.log")
        try:
            where = "random weights" if random_models else "the local Hugging Face cache, a folder, or a download"
            print(f"loading {settings.detector} + {settings.segmenter} in the backend ({where}) ...", flush=True)
            try:
                backend.wait_ready()
            except BackendError as exc:
                raise DemoError(f"{exc}\n  Without the weights (offline), run the same demo on randomly initialised "
                                f"models:\n\n    PRELABEL_DETECTOR=random-tiny PRELABEL_SEGMENTER=random-tiny make demo\n"
                                if not random_models else str(exc)) from exc
            client = LabelStudioClient(ls.url, ls.token)
            project, task_ids = demo_project(client, list(images or sorted(ASSETS.glob("*.jpg"))))
            connect_demo_backend(client, project, backend.url)
            print(f"pre-labeling {len(task_ids)} tasks ...", flush=True)
            client.retrieve_predictions(project)
            stored = sum(1 for t in task_ids if client.predictions(t))
            print(f"\n  Label Studio: {ls.url}/projects/{project}/data")
            print(f"  login:        {ls.username} / {ls.password}")
            print(f"  predictions:  stored for {stored} of {len(task_ids)} tasks")
            print(f"  API access:   LABEL_STUDIO_URL={ls.url} LABEL_STUDIO_API_KEY={ls.token}")
            print(f"                (for prelabel rank --project {project} / report / serve)")
            if random_models:
                print("  NOTE: random-weight models (offline mode): the pre-annotations are NOT meaningful.")
            print("\nPress Ctrl-C to stop.", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            backend.stop()


class DemoError(PrelabelError):
    """The demo could not be set up; the message says what to run instead."""


def demo_project(client: LabelStudioClient, images: Sequence[Path]) -> tuple[int, list[int]]:
    """The demo project and its task ids: the existing one of that title, else a new one with ``images``."""
    existing = [p["id"] for p in client.projects() if p.get("title") == DEMO_TITLE]
    if existing:
        project = int(existing[0])
        return project, [int(t["id"]) for t in client.tasks(project)]
    project = client.create_project(DEMO_TITLE, DEMO_CONFIG)
    return project, client.import_images(project, images)


def connect_demo_backend(client: LabelStudioClient, project: int, backend_url: str) -> None:
    """Connect ``backend_url``, first removing backends (and their webhooks) of earlier runs of the demo."""
    for ml in client.call("GET", "/api/ml", params={"project": project}) or []:
        if ml.get("url") != backend_url:
            client.call("DELETE", f"/api/ml/{ml['id']}")
    for hook in client.call("GET", "/api/webhooks", params={"project": project}) or []:
        if not str(hook.get("url", "")).startswith(backend_url):
            client.call("DELETE", f"/api/webhooks/{hook['id']}")
    client.connect_backend(project, backend_url)
