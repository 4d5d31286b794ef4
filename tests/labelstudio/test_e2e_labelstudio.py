"""End to end against a real Label Studio: it calls our backend, and we read back what it stored."""

import time

import numpy as np
import pytest
import requests
from PIL import Image

from prelabel.core.uncertainty import FEATURES
from prelabel.labelstudio.brush import brush_rle_to_mask
from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.config import image_config, parse_label_config, video_config
from prelabel.labelstudio.demo import BackendProcess
from prelabel.labelstudio.ranking import save_review_views

pytestmark = pytest.mark.e2e

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/><Label value="dog" predicted_values="dog,puppy"/></RectangleLabels>
<PolygonLabels name="poly" toName="image"><Label value="cat"/><Label value="dog"/></PolygonLabels>
<BrushLabels name="brush" toName="image"><Label value="cat"/><Label value="dog"/></BrushLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="cat"/></KeyPointLabels>
</View>"""
ONE_LABEL = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels></View>"""
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
    return LabelStudioClient(label_studio.url, label_studio.token)


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("backend")
    env = {**MODELS, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "PRELABEL_FEEDBACK_DB": str(workdir / "feedback.sqlite3")}
    process = BackendProcess(env, workdir / "backend.log")
    process.wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def project(api, backend, images):
    project_id = api.create_project("e2e", CONFIG)
    task_ids = api.import_images(project_id, images)
    ml_id = api.connect_backend(project_id, backend.url)
    return project_id, task_ids, ml_id


def wait_for_project_version(api, project_id, version):
    """/setup's background job points the project at our model_version; wait for it."""
    deadline = time.monotonic() + 10
    while api.call("GET", f"/api/projects/{project_id}")["model_version"] != version and time.monotonic() < deadline:
        time.sleep(0.2)
    assert api.call("GET", f"/api/projects/{project_id}")["model_version"] == version


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
        assert set(r["prelabel"]["features"]) == set(FEATURES), "Label Studio keeps prelabel's signals verbatim"
        assert ("meta" in r) == (r["score"] < 0.45), "low-confidence regions carry the review note"
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
    wait_for_project_version(api, project_id, version)
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


def test_label_studio_orders_the_most_uncertain_task_first(api, backend, images):
    # One label: random-tiny's boxes of different labels overlap so much that every task would score 0.
    project_id = api.create_project("ranking", ONE_LABEL)
    task_ids = api.import_images(project_id, images)
    api.connect_backend(project_id, backend.url)
    api.retrieve_predictions(project_id)
    version = api.predictions(task_ids[0])[0]["model_version"]
    wait_for_project_version(api, project_id, version)
    scores = {t: api.predictions(t)[0]["score"] for t in task_ids}
    assert len(set(scores.values())) == len(scores), "random-tiny gives every image its own score"
    cut = sorted(scores.values())[1] + 1e-6  # two tasks below the review threshold
    views = save_review_views(api, project_id, cut)
    ordered = [t["id"] for t in api.tasks(project_id, view=views["most uncertain first"])]
    assert ordered == sorted(task_ids, key=scores.get), "Label Studio's own sort: lowest score first"
    flagged = [t["id"] for t in api.tasks(project_id, view=views["needs review"])]
    assert flagged == sorted(task_ids, key=scores.get)[:2]
    assert save_review_views(api, project_id, cut) == views, "saving again updates the same tabs"
    hidden = api.call("GET", f"/api/dm/views/{views['needs review']}")["data"]["hiddenColumns"]
    assert "tasks:created_at" in hidden["explore"] and "tasks:predictions_results" in hidden["explore"]
    assert not {"tasks:id", "tasks:predictions_score", "tasks:data.image"} & set(hidden["explore"] + hidden["labeling"])


def test_annotation_feedback_reaches_the_store(api, backend, project):
    project_id, task_ids, _ = project
    (prediction,) = api.predictions(task_ids[1])
    dropped = prediction["result"][0]["prelabel"]["region"]
    kept = [r for r in prediction["result"] if r["prelabel"]["region"] != dropped]
    added = {"from_name": "bbox", "to_name": "image", "type": "rectanglelabels", "original_width": 80,
             "original_height": 120, "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0,
                                               "rectanglelabels": ["dog"]}}
    api.call("POST", f"/api/tasks/{task_ids[1]}/annotations",
             json={"result": kept + [added], "parent_prediction": prediction["id"]})
    deadline, report = time.monotonic() + 15, {}
    while time.monotonic() < deadline and not report.get("annotations"):
        report = requests.get(f"{backend.url}/report", params={"project": project_id}, timeout=5).json()
        time.sleep(0.2)
    overall = report["overall"]
    assert report["annotations"] == 1 and overall["added"] == 1
    assert overall["deleted"] == sum(r["prelabel"]["region"] == dropped for r in prediction["result"])
    assert overall["accepted"] == len(kept)


def test_tasks_past_the_deadline_are_pushed_by_the_background_job(api, label_studio, images, tmp_path):
    env = {**MODELS, "PRELABEL_PREDICT_DEADLINE_S": "0", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "PRELABEL_FEEDBACK_DB": str(tmp_path / "fb.sqlite3")}
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


def test_label_studio_accepts_the_configs_prelabel_writes_with_markup_in_a_label_name(api):
    names = ['a"<b&', "cat"]
    for xml in (image_config(names, polygons=True, smart_keypoints=True), video_config(names)):
        project = api.create_project("markup in a label", xml)
        stored = parse_label_config(api.call("GET", f"/api/projects/{project}")["label_config"])
        assert [prompt.name for prompt in stored.prompts] == names
