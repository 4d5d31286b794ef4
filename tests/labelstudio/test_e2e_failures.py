"""A task the backend could not pre-label, as Label Studio shows it: a failure note on the task, not a silent
"Retrieved N predictions"; the next Retrieve Predictions tries it again, and once the cause is fixed the note goes.
"""

import time

import numpy as np
import pytest
import requests
from PIL import Image

from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.demo import BackendProcess

pytestmark = pytest.mark.e2e

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels></View>"""
MODELS = {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny", "PRELABEL_BOX_THRESHOLD": "0.3"}
METADATA_URL = "http://169.254.169.254/latest/meta-data/photo.png"  # a cloud metadata address: always refused


def predictions_by_task(api, project):
    return {task["id"]: api.predictions(task["id"]) for task in api.tasks(project)}


def test_failed_tasks_show_in_label_studio_and_are_retried_once_the_cause_is_fixed(label_studio, tmp_path):
    api = LabelStudioClient(label_studio.url, label_studio.token)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "small.png")  # 1,200 px
    Image.fromarray(rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)).save(tmp_path / "large.png")  # 12,000 px
    project = api.create_project("failures", CONFIG)
    api.import_images(project, [tmp_path / "small.png", tmp_path / "large.png"])
    api.call("POST", f"/api/projects/{project}/import", json=[{"image": METADATA_URL}])
    tasks = {task["data"]["image"].rsplit("/", 1)[-1].split("-")[-1]: task["id"] for task in api.tasks(project)}
    small, large, refused = tasks["small.png"], tasks["large.png"], tasks["photo.png"]

    env = {**MODELS, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "PRELABEL_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")}
    backend = BackendProcess({**env, "PRELABEL_MAX_PIXELS": "5000"}, tmp_path / "backend.log")
    try:
        backend.wait_ready()
        api.connect_backend(project, backend.url)
        version = requests.post(f"{backend.url}/setup", json={"project": f"{project}.0", "schema": CONFIG},
                                timeout=10).json()["model_version"]
        api.retrieve_predictions(project)
        stored = predictions_by_task(api, project)
        assert [p["model_version"] for p in stored[small]] == [version]
        (too_large,) = stored[large]
        assert too_large["model_version"] == f"{version} failed: image unreadable or too large"
        assert too_large["result"] == [] and too_large["score"] == 0
        (note,) = stored[refused]
        assert note["model_version"] == f"{version} failed: image URL refused"
        log = backend.log_path.read_text()
        assert f"task {large} not pre-labeled" in log and "PRELABEL_MAX_PIXELS" in log

        api.retrieve_predictions(project)  # tried again, failing again: still one note each
        again = predictions_by_task(api, project)
        assert [p["id"] for p in again[large]] == [too_large["id"]] and [p["id"] for p in again[refused]] == [
            note["id"]]
    finally:
        backend.stop()

    fixed = BackendProcess({**env, "PRELABEL_MAX_PIXELS": "50000"}, tmp_path / "fixed.log", port=backend.port)
    try:
        fixed.wait_ready()
        api.retrieve_predictions(project)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the failure note is deleted by a background job
            after = predictions_by_task(api, project)
            if [p["model_version"] for p in after[large]] == [version]:
                break
            time.sleep(0.3)
        assert [p["model_version"] for p in after[large]] == [version], after[large]
        assert after[large][0]["result"], "pre-labeled once the limit allows it"
        assert [p["id"] for p in after[refused]] == [note["id"]], "a task that still fails keeps its one note"
        assert [p["model_version"] for p in after[small]] == [version], "a done task is not pre-labeled twice"
    finally:
        fixed.stop()
