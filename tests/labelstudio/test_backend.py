"""The ML backend app through Flask's test client, with images served over loopback HTTP."""

import json
import time

import pytest
from image_host import ImageHost, write_random_images

from prelabel.labelstudio.backend import create_app
from prelabel.labelstudio.brush import brush_rle_to_mask
from prelabel.settings import Settings

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/><Label value="dog"/></RectangleLabels>
<PolygonLabels name="poly" toName="image"><Label value="cat"/><Label value="dog"/></PolygonLabels>
<BrushLabels name="brush" toName="image"><Label value="cat"/><Label value="dog"/></BrushLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="cat"/></KeyPointLabels>
</View>"""


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = write_random_images(tmp_path_factory.mktemp("images"), {"a.png": (60, 80), "b.jpg": (40, 50)})
    (root / "notes.png").write_bytes(b"definitely not a png")
    with ImageHost(root) as server:
        yield server


@pytest.fixture()
def client(labeler, host, tmp_path):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", label_studio_url=host.url,
                        label_studio_api_key=host.token, box_threshold=0.3,
                        feedback_db=str(tmp_path / "feedback.sqlite3"))
    app = create_app(settings, labeler)
    return app.test_client()


def predict(client, tasks, **extra):
    body = {"tasks": tasks, "label_config": CONFIG, "project": "1.17000", "params": {"context": None}, **extra}
    return client.post("/predict", json=body)


def test_health_and_setup_answer_without_models(host):
    app = create_app(Settings(detector="random-tiny", segmenter="random-tiny", predict_deadline_s=0.01))
    client = app.test_client()
    assert client.get("/health").get_json()["status"] == "UP"
    setup = client.post("/setup", json={"project": "3.1", "schema": CONFIG, "hostname": host.url,
                                        "access_token": "x", "extra_params": None})
    assert setup.status_code == 200 and setup.get_json()["model_version"].startswith("prelabel-random-")


def test_setup_version_is_stable_and_matches_predictions(client, host):
    first = client.post("/setup", json={"project": "1.1", "schema": CONFIG}).get_json()["model_version"]
    second = client.post("/setup", json={"project": "1.1", "schema": CONFIG}).get_json()["model_version"]
    assert first == second
    response = predict(client, [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}])
    assert response.get_json()["results"][0]["model_version"] == first


def test_predict_relative_upload_url_with_token(client, host):
    response = predict(client, [{"id": 1, "data": {"image": "/data/upload/1/a.png"}},
                                {"id": 2, "data": {"image": f"{host.url}/b.jpg"}}])
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == 2
    for item, (w, h) in zip(results, [(80, 60), (50, 40)]):
        assert 0 <= item["score"] <= 1 and item["result"]
        for r in item["result"]:
            assert r["original_width"] == w and r["original_height"] == h
            assert r["from_name"] in {"bbox", "poly", "brush"} and r["value"][r["type"]][0] in {"cat", "dog"}
            if r["type"] == "rectanglelabels":
                v = r["value"]
                assert 0 <= v["x"] <= 100 and 0 <= v["y"] <= 100 and v["x"] + v["width"] <= 100 + 1e-6
    assert ("/data/upload/1/a.png", "Token test-token") in host.requests
    assert ("/b.jpg", "Token test-token") in host.requests, "the LS host gets the token"


def test_bad_tasks_get_a_per_task_error_and_the_rest_succeeds(client, host):
    response = predict(client, [
        {"id": 1, "data": {"image": f"{host.url}/missing.png"}},
        {"id": 2, "data": {"image": "/data/upload/notes.png"}},
        {"id": 3, "data": {"text": "no image key"}},
        {"id": 4, "data": {"image": "http://127.0.0.1:9/unreachable.png"}},
        {"id": 5, "data": {"image": "/data/upload/1/a.png"}},
    ])
    assert response.status_code == 200
    results = response.get_json()["results"]
    version = results[4]["model_version"]
    # Each failure is a prediction Label Studio stores and shows: no regions, a model_version naming the failure.
    for result, kind in zip(results, ["image not fetched", "image unreadable or too large", "no image in the task",
                                      "image URL refused"]):
        assert result["result"] == [] and result["score"] == 0 and result["model_version"] == f"{version} failed: {kind}"
    assert "HTTP 404" in results[0]["error"]
    assert "not an image" in results[1]["error"]
    assert "data.image" in results[2]["error"]
    # Another port on Label Studio's host is another service: refused (Label Studio's origin is trusted, not its host).
    assert "LABEL_STUDIO_URL's origin" in results[3]["error"]
    assert results[4]["result"]


def test_a_failure_the_task_already_shows_is_not_stored_twice(client, host):
    task = {"id": 1, "data": {"image": f"{host.url}/missing.png"}}
    (first,) = predict(client, [task]).get_json()["results"]
    stored = [{"id": 31, "model_version": first["model_version"], "result": []}]
    (again,) = predict(client, [{**task, "predictions": stored}]).get_json()["results"]
    assert "result" not in again and again["model_version"] == first["model_version"] and "HTTP 404" in again["error"]


def test_the_failure_note_of_a_task_pre_labeled_since_is_deleted(client, host):
    task = {"id": 1, "data": {"image": "/data/upload/1/a.png"}}
    (failure,) = predict(client, [{**task, "data": {"image": f"{host.url}/missing.png"}}]).get_json()["results"]
    stored = [{"id": 41, "model_version": failure["model_version"], "result": []},
              {"id": 42, "model_version": "someone-else failed: image URL refused", "result": []}]
    (done,) = predict(client, [{**task, "predictions": stored}]).get_json()["results"]
    assert done["result"]
    deadline = time.monotonic() + 10
    while not host.deletes and time.monotonic() < deadline:  # a background job deletes it
        time.sleep(0.05)
    assert ("/api/predictions/41", "DELETE") in host.deletes and ("/api/predictions/42", "DELETE") not in host.deletes


def test_unauthorised_label_studio_names_the_setting(labeler, host):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", label_studio_url=host.url,
                        label_studio_api_key="wrong")
    client = create_app(settings, labeler).test_client()
    item = predict(client, [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}]).get_json()["results"][0]
    assert "LABEL_STUDIO_API_KEY" in item["error"]


def test_relative_url_without_label_studio_url_names_the_setting(labeler):
    client = create_app(Settings(detector="random-tiny", segmenter="random-tiny"), labeler).test_client()
    item = predict(client, [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}]).get_json()["results"][0]
    assert "LABEL_STUDIO_URL" in item["error"]


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "JSON object"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"tasks": "nope", "label_config": CONFIG}).encode(), "'tasks' must be a list"),
        (json.dumps({"tasks": [], "label_config": "<View><Image name='i' value='$i'/></View>"}).encode(),
         "no RectangleLabels"),
    ],
)
def test_malformed_requests_are_400_and_the_server_keeps_serving(client, body, message):
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 400 and message in response.get_json()["error"]
    assert predict(client, [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}]).status_code == 200


def test_setup_with_unsupported_config_is_400():
    client = create_app(Settings(detector="random-tiny", segmenter="random-tiny")).test_client()
    response = client.post("/setup", json={"project": "1.1", "schema": "<View></View>"})
    assert response.status_code == 400 and "no <Image>" in response.get_json()["error"]


def test_interactive_keypoint_returns_masks_from_the_cached_embedding(client, labeler):
    context = {"result": [
        {"type": "keypointlabels", "is_positive": True, "original_width": 80, "original_height": 60,
         "value": {"x": 50.0, "y": 50.0, "width": 0.5, "keypointlabels": ["cat"]}, "from_name": "kp", "to_name": "image"},
    ]}
    task = {"id": 1, "data": {"image": "/data/upload/1/a.png"}}
    first = client.post("/predict", json={"tasks": [task], "label_config": CONFIG, "params": {"context": context}})
    calls = labeler.segmenter.encoder_calls
    context["result"].append({"type": "keypointlabels", "is_positive": False,
                              "value": {"x": 10.0, "y": 10.0, "keypointlabels": ["cat"]}})
    second = client.post("/predict", json={"tasks": [task], "label_config": CONFIG, "params": {"context": context}})
    assert labeler.segmenter.encoder_calls == calls, "the second click reuses the embedding"
    for response in (first, second):
        (item,) = response.get_json()["results"]
        types = {r["type"] for r in item["result"]}
        assert types <= {"brushlabels", "polygonlabels"} and "brushlabels" in types
        brush = next(r for r in item["result"] if r["type"] == "brushlabels")
        assert brush["value"]["brushlabels"] == ["cat"]
        assert brush_rle_to_mask(brush["value"]["rle"], 80, 60).shape == (60, 80)


def test_deadline_defers_tasks_without_storing_empty_predictions(labeler, host):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", label_studio_url="",
                        predict_deadline_s=0.0)
    client = create_app(settings, labeler).test_client()
    results = predict(client, [{"id": 1, "data": {"image": f"{host.url}/b.jpg"}}]).get_json()["results"]
    assert results[0].get("deferred") is True and "result" not in results[0]


def test_basic_auth_when_configured(labeler, tmp_path):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", basic_auth_user="ls", basic_auth_pass="pw",
                        feedback_db=str(tmp_path / "feedback.sqlite3"))
    client = create_app(settings, labeler).test_client()
    assert client.get("/health").status_code == 401
    assert client.get("/health", auth=("ls", "pw")).status_code == 200
    webhook = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 1}})
    assert webhook.status_code == 200 and webhook.get_json()["status"] == "ignored", "webhooks carry no credentials"
