"""End to end against a real Label Studio: it calls our backend, and we read back what it stored."""

import time

import numpy as np
import pytest
import requests
from PIL import Image

from prelabel.demo import BackendProcess, LabelStudioAPI
from prelabel.formats.labelstudio import brush_rle_to_mask

pytestmark = pytest.mark.e2e

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/><Label value="dog" predicted_values="dog,puppy"/></RectangleLabels>
<PolygonLabels name="poly" toName="image"><Label value="cat"/><Label value="dog"/></PolygonLabels>
<BrushLabels name="brush" toName="image"><Label value="cat"/><Label value="dog"/></BrushLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="cat"/></KeyPointLabels>
</View>"""
SIZES = [(96, 64), (80, 120), (128, 128)]
MODELS = {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny", "PRELABEL_BOX_THRESHOLD": "0.3"}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-images")
    rng = np.random.default_rng(5)
    paths = []
    for i, (w, h) in enumerate(SIZES):
        paths.append(root / f"img{i}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def api(label_studio):
    return LabelStudioAPI(label_studio.url, label_studio.token)


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    env = {**MODELS, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}
    process = BackendProcess(env, tmp_path_factory.mktemp("backend") / "backend.log")
    process.wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def project(api, backend, images):
    project_id = api.create_project("e2e", CONFIG)
    task_ids = api.import_images(project_id, images)
    ml_id = api.connect_backend(project_id, backend.url)
    return project_id, task_ids, ml_id


def check_prediction(prediction, size, version):
    width, height = size
    assert prediction["model_version"] == version
    assert prediction["score"] is not None and 0 <= prediction["score"] <= 1
    assert prediction["result"], "random-tiny with threshold 0.3 always finds regions"
    controls = {"bbox": "rectanglelabels", "poly": "polygonlabels", "brush": "brushlabels"}
    for r in prediction["result"]:
        assert controls[r["from_name"]] == r["type"] and r["to_name"] == "image"
        assert (r["original_width"], r["original_height"]) == (width, height)
        labels = r["value"][r["type"]]
        assert len(labels) == 1 and labels[0] in {"cat", "dog"}
        value = r["value"]
        if r["type"] == "rectanglelabels":
            assert 0 <= value["x"] <= 100 and 0 <= value["y"] <= 100
            assert value["x"] + value["width"] <= 100 + 1e-6 and value["y"] + value["height"] <= 100 + 1e-6
        elif r["type"] == "polygonlabels":
            points = np.array(value["points"])
            assert len(points) >= 3 and (points >= 0).all() and (points <= 100).all()
        else:
            assert brush_rle_to_mask(value["rle"], width, height).any()
    assert {r["type"] for r in prediction["result"]} == set(controls.values())


def test_retrieve_predictions_stores_valid_predictions_for_every_task(api, backend, project, label_studio):
    project_id, task_ids, _ = project
    version = requests.post(f"{backend.url}/setup", json={"project": f"{project_id}.0", "schema": CONFIG},
                            timeout=5).json()["model_version"]
    started = time.monotonic()
    api.retrieve_predictions(project_id)
    elapsed = time.monotonic() - started
    for task_id, size in zip(task_ids, SIZES):
        (prediction,) = api.predictions(task_id)
        check_prediction(prediction, size, version)
    # Label Studio skips tasks that already hold a prediction of this version: no duplicates.
    api.retrieve_predictions(project_id)
    assert all(len(api.predictions(t)) == 1 for t in task_ids)
    # /setup pointed the project at our version, so the Data Manager's score column works.
    deadline = time.monotonic() + 10
    while api.call("GET", f"/api/projects/{project_id}")["model_version"] != version and time.monotonic() < deadline:
        time.sleep(0.2)
    assert api.call("GET", f"/api/projects/{project_id}")["model_version"] == version
    print(f"retrieve_predictions for {len(task_ids)} tasks: {elapsed:.2f} s")


def test_interactive_click_returns_a_mask(api, project):
    _, task_ids, ml_id = project
    context = {"result": [{"original_width": 96, "original_height": 64, "image_rotation": 0, "from_name": "kp",
                           "to_name": "image", "type": "keypointlabels", "origin": "manual", "is_positive": True,
                           "value": {"x": 40.0, "y": 50.0, "width": 1.0, "keypointlabels": ["cat"]}}]}
    response = api.call("POST", f"/api/ml/{ml_id}/interactive-annotating",
                        json={"task": task_ids[0], "context": context})
    result = response["data"]["result"]
    brush = next(r for r in result if r["type"] == "brushlabels")
    assert brush["value"]["brushlabels"] == ["cat"]
    assert brush_rle_to_mask(brush["value"]["rle"], 96, 64).shape == (64, 96)


def test_annotation_webhook_reaches_the_backend(api, backend, project):
    _, task_ids, _ = project
    result = [{"from_name": "bbox", "to_name": "image", "type": "rectanglelabels", "original_width": 96,
               "original_height": 64, "value": {"x": 10, "y": 10, "width": 30, "height": 30, "rotation": 0,
                                                "rectanglelabels": ["cat"]}}]
    api.call("POST", f"/api/tasks/{task_ids[1]}/annotations", json={"result": result})
    deadline = time.monotonic() + 15
    while "webhook ANNOTATION_CREATED" not in backend.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "webhook ANNOTATION_CREATED" in backend.log_path.read_text()


def test_tasks_past_the_deadline_are_pushed_by_the_background_job(api, label_studio, images, tmp_path):
    env = {**MODELS, "PRELABEL_PREDICT_DEADLINE_S": "0", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token}
    slow = BackendProcess(env, tmp_path / "backend.log")
    try:
        slow.wait_ready()
        project_id = api.create_project("deferred", CONFIG)
        task_ids = api.import_images(project_id, images)
        api.connect_backend(project_id, slow.url)
        api.retrieve_predictions(project_id)  # answers at once; nothing stored synchronously
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(api.predictions(t) for t in task_ids):
            time.sleep(0.5)
        for task_id, size in zip(task_ids, SIZES):
            (prediction,) = api.predictions(task_id)
            check_prediction(prediction, size, prediction["model_version"])
    finally:
        slow.stop()


def test_backend_survives_bad_requests_from_label_studio_side(backend):
    assert requests.post(f"{backend.url}/predict", data=b"{oops", timeout=5,
                         headers={"Content-Type": "application/json"}).status_code == 400
    assert requests.get(f"{backend.url}/health", timeout=2).json()["status"] == "UP"
