"""Webhook -> feedback store -> fit -> new model_version and calibrated predictions, on Flask's test client."""

import time

import pytest
from image_host import ImageHost, write_random_images

from prelabel.labelstudio.backend import create_app
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/><Label value="dog"/></RectangleLabels>
<PolygonLabels name="poly" toName="image"><Label value="cat"/><Label value="dog"/></PolygonLabels>
</View>"""


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    images = write_random_images(tmp_path_factory.mktemp("images"), {f"{i}.png": (48, 64) for i in range(4)}, seed=3)
    with ImageHost(images) as server:
        yield server


@pytest.fixture()
def app(host, tmp_path):
    labeler = build_labeler(Settings(detector="random-tiny", segmenter="random-tiny", device="cpu", box_threshold=0.3,
                                     max_detections=12))
    settings = Settings(detector="random-tiny", segmenter="random-tiny", box_threshold=0.3, label_studio_url=host.url,
                        label_studio_api_key=host.token, feedback_db=str(tmp_path / "fb.sqlite3"),
                        fit_min_samples=10)
    return create_app(settings, labeler)


def annotate(prediction):
    """A scripted annotator (a test double): keeps the regions with the top half of detector scores (box and
    polygon), deletes the others, adds one dog box. Returns the result and the kept and deleted region counts."""
    items = prediction["result"]
    scores = {r["prelabel"]["region"]: r["prelabel"]["features"]["score"] for r in items}
    ranked = sorted(scores, key=lambda i: -scores[i])
    keep = set(ranked[: len(ranked) // 2])
    kept = [{k: v for k, v in r.items() if k not in ("score", "prelabel")} for r in items
            if r["prelabel"]["region"] in keep]
    added = {**items[0], "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0,
                                   "rectanglelabels": ["dog"]}}
    return kept + [added], len(keep), len(ranked) - len(keep)


def test_webhooks_are_learned_from_and_the_fit_changes_thresholds_version_and_scores(app):
    client = app.test_client()
    first = client.post("/setup", json={"project": "7.1", "schema": CONFIG}).get_json()["model_version"]
    tasks = [{"id": i, "data": {"image": f"/data/upload/{i}.png"}} for i in range(4)]
    body = {"tasks": tasks, "label_config": CONFIG, "project": "7.1"}
    predictions = client.post("/predict", json=body).get_json()["results"]
    assert all(p["model_version"] == first for p in predictions)
    kept_total = deleted_total = 0
    for task, prediction in zip(tasks, predictions):
        result, kept, deleted = annotate(prediction)
        kept_total, deleted_total = kept_total + kept, deleted_total + deleted
        event = {"action": "ANNOTATION_CREATED", "project": {"id": 7, "label_config": CONFIG},
                 "task": {"id": task["id"]},
                 "annotation": {"id": 100 + task["id"], "task": task["id"], "project": 7, "result": result,
                                "lead_time": 12.5, "prediction": {"id": task["id"], **prediction}}}
        reply = client.post("/webhook", json=event)
        assert reply.status_code == 200 and reply.get_json()["status"] == "stored"
    bad = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 7}, "annotation": "x"})
    assert bad.status_code == 400 and "annotation" in bad.get_json()["error"]

    report = client.get("/report?project=7").get_json()
    boxes = report["labels"]
    assert report["annotations"] == 4
    assert sum(v["accepted"] for v in boxes.values()) == 2 * kept_total, "unchanged boxes and polygons"
    assert sum(v["deleted"] for v in boxes.values()) == 2 * deleted_total
    assert sum(v["added"] for v in boxes.values()) == 4

    fitted = client.post("/train", json={"project": 7})
    assert fitted.status_code == 200, fitted.get_json()
    learned = fitted.get_json()
    assert learned["model_version"] != first and learned["calibration"] is not None
    assert client.post("/setup", json={"project": "7.1", "schema": CONFIG}).get_json()["model_version"] == \
        learned["model_version"]
    again = client.post("/predict", json=body).get_json()["results"]
    assert sum(map(len, (p["result"] for p in again))) < sum(map(len, (p["result"] for p in predictions))), \
        "the learned thresholds drop the kind of region annotators deleted"
    for prediction in again:
        assert prediction["model_version"] == learned["model_version"]
        for item in prediction["result"]:
            label = item["value"][item["type"]][0]
            assert item["prelabel"]["features"]["score"] >= learned["thresholds"].get(label, 0.3) - 1e-4
    other = client.post("/predict", json={**body, "project": "8.1"}).get_json()["results"]
    assert other[0]["model_version"] == first, "another project keeps its own (unfitted) version"


def test_train_without_enough_feedback_is_409_and_start_training_is_skipped(app):
    client = app.test_client()
    reply = client.post("/train", json={"project": 9, "label_config": CONFIG})
    assert reply.status_code == 409 and "not enough feedback" in reply.get_json()["error"]
    start = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 9, "label_config": CONFIG}})
    assert start.status_code == 200 and start.get_json()["status"] == "skipped"
    assert client.post("/train", json={"project": 9}).status_code == 400, "no label config known for the project"


def test_fit_every_n_annotations_runs_in_the_background(host, tmp_path):
    labeler = build_labeler(Settings(detector="random-tiny", segmenter="random-tiny", device="cpu", box_threshold=0.3,
                                     max_detections=12))
    settings = Settings(detector="random-tiny", segmenter="random-tiny", box_threshold=0.3, label_studio_url=host.url,
                        label_studio_api_key=host.token, feedback_db=str(tmp_path / "fb.sqlite3"),
                        fit_min_samples=10, fit_every=3)
    client = create_app(settings, labeler).test_client()
    tasks = [{"id": i, "data": {"image": f"/data/upload/{i}.png"}} for i in range(3)]
    body = {"tasks": tasks, "label_config": CONFIG, "project": "5.1"}
    first = client.post("/setup", json={"project": "5.1", "schema": CONFIG}).get_json()["model_version"]
    for task, prediction in zip(tasks, client.post("/predict", json=body).get_json()["results"]):
        result, _, _ = annotate(prediction)
        client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 5, "label_config": CONFIG},
                                      "annotation": {"id": task["id"], "task": task["id"], "result": result,
                                                     "prediction": prediction}})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        version = client.post("/setup", json={"project": "5.1", "schema": CONFIG}).get_json()["model_version"]
        if version != first:
            break
        time.sleep(0.1)
    assert version != first, "three annotations triggered a fit and a new model_version"
