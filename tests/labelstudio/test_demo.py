"""`prelabel demo` for a new user: a backend that cannot load says why in one line (and the demo prints the
offline command), a rerun reuses its project and replaces the stale backend connection."""

import json

import numpy as np
import pytest
from PIL import Image

from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.demo import (
    DEMO_TITLE,
    BackendError,
    BackendProcess,
    connect_demo_backend,
    demo_project,
    last_error,
)


def test_a_backend_that_cannot_load_its_models_says_why(tmp_path):
    backend = BackendProcess({"PRELABEL_DETECTOR": "not-a-model", "PRELABEL_SEGMENTER": "random-tiny"},
                             tmp_path / "backend.log")
    with pytest.raises(BackendError) as info:
        backend.wait_ready(timeout=120)
    message = str(info.value)
    assert "unknown detector 'not-a-model'" in message and "random-tiny" in message
    assert "\n" not in message and len(message) < 600, "one line, not the log"


def test_last_error_reads_json_and_text_logs(tmp_path):
    log = tmp_path / "backend.log"
    log.write_text("\n".join([json.dumps({"level": "INFO", "message": "starting"}),
                              json.dumps({"level": "ERROR", "message": "model loading failed: boom"}),
                              json.dumps({"level": "INFO", "message": "GET /health 200"})]) + "\n")
    assert last_error(log) == "model loading failed: boom"
    log.write_text("plain start\nERROR prelabel: the port is busy\n")
    assert last_error(log) == "ERROR prelabel: the port is busy"


@pytest.mark.e2e
def test_a_rerun_reuses_the_demo_project_and_replaces_the_dead_backend(label_studio, tmp_path):
    client = LabelStudioClient(label_studio.url, label_studio.token)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    project, tasks = demo_project(client, [image])
    connect_demo_backend(client, project, "http://127.0.0.1:9")  # the first run's backend, now stopped
    again, same_tasks = demo_project(client, [image, image])
    assert (again, same_tasks) == (project, tasks), "no second project, no second import"
    assert sum(p["title"] == DEMO_TITLE for p in client.projects()) == 1
    connect_demo_backend(client, project, "http://127.0.0.1:10")
    urls = [ml["url"] for ml in client.call("GET", "/api/ml", params={"project": project})]
    assert urls == ["http://127.0.0.1:10"], "the stale backend is gone"
    hooks = [h["url"] for h in client.call("GET", "/api/webhooks", params={"project": project})]
    assert not any(url.startswith("http://127.0.0.1:9/") for url in hooks)
