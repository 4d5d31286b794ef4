"""The one-command demo: a local Label Studio, the backend connected, a demo project pre-labeled.

The helpers here drive Label Studio only through its public REST API, as a user's script would; the
end-to-end tests use the same helpers.
"""

from __future__ import annotations

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

from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.local import LocalLabelStudio, ensure_label_studio, free_port, stop_process_group

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
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
        """Wait until /health reports the models loaded; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                health = requests.get(f"{self.url}/health", timeout=2).json()
                if health.get("model_state") == "ready":
                    return health
                if health.get("model_state") == "error":
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        tail = self.log_path.read_text(errors="replace")[-4000:]
        self.stop()
        raise RuntimeError(f"the backend did not become ready at {self.url}:\n{tail}")

    def stop(self, grace: float = 15) -> None:
        stop_process_group(self.proc, grace)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(workdir: Path, port: int = 8080, images: Sequence[Path] | None = None) -> None:
    """Start Label Studio and the backend, pre-label a demo project, and keep both running until Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops Label Studio and the backend too
    workdir.mkdir(parents=True, exist_ok=True)
    venv = Path(os.environ.get("PRELABEL_LS_VENV", ".venv-ls"))
    executable = ensure_label_studio(venv)
    random_models = {os.environ.get("PRELABEL_DETECTOR"), os.environ.get("PRELABEL_SEGMENTER")} & {"random-tiny",
                                                                                                   "random-full"}
    with LocalLabelStudio(executable, workdir / "label-studio", port=port) as ls:
        print(f"Label Studio is up at {ls.url}", flush=True)
        backend = BackendProcess({"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token},
                                 workdir / "backend.log")
        try:
            print("loading models in the backend (first run of real models downloads them) ...", flush=True)
            backend.wait_ready()
            api = LabelStudioClient(ls.url, ls.token)
            project = api.create_project("prelabel demo", DEMO_CONFIG)
            task_ids = api.import_images(project, list(images or sorted(ASSETS.glob("*.jpg"))))
            api.connect_backend(project, backend.url)
            print(f"pre-labeling {len(task_ids)} tasks ...", flush=True)
            api.retrieve_predictions(project)
            stored = sum(len(api.predictions(t)) for t in task_ids)
            print(f"\n  Label Studio: {ls.url}/projects/{project}/data")
            print(f"  login:        {ls.username} / {ls.password}")
            print(f"  predictions:  {stored} stored for {len(task_ids)} tasks")
            if random_models:
                print("  NOTE: random-weight models (offline mode): the pre-annotations are NOT meaningful.")
            print("\nPress Ctrl-C to stop.", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            backend.stop()
