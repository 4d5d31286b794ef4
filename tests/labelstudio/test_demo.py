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
    env = {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny"}
    project, tasks = demo_project(client, [image])
    first = BackendProcess(env, tmp_path / "first.log")  # the first run's backend, stopped when that run ends
    try:
        first.wait_ready()
        connect_demo_backend(client, project, first.url)
    finally:
        first.stop()
    second = BackendProcess(env, tmp_path / "second.log")
    try:
        second.wait_ready()
        again, same_tasks = demo_project(client, [image, image])
        assert (again, same_tasks) == (project, tasks), "no second project, no second import"
        assert sum(p["title"] == DEMO_TITLE for p in client.projects()) == 1
        connect_demo_backend(client, project, second.url)
        urls = [ml["url"] for ml in client.call("GET", "/api/ml", params={"project": project})]
        assert urls == [second.url], "the stale backend is gone"
        hooks = [h["url"] for h in client.call("GET", "/api/webhooks", params={"project": project})]
        assert not any(url.startswith(first.url) for url in hooks)
    finally:
        second.stop()
