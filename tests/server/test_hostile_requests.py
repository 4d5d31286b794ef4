"""Hostile and broken requests on the paths the newer features add (videos, exemplar boxes): each gets a
clear 4xx or a per-task error naming the fix, never a 5xx, and the server keeps serving."""

import pytest
from image_host import ImageHost, write_random_images

from prelabel.labelstudio.backend import create_app
from prelabel.settings import Settings
from video_data import write_square_video

IMAGE = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels>
<RectangleLabels name="exemplar" toName="image" smart="true"><Label value="cat"/></RectangleLabels></View>"""
VIDEO = """<View><Video name="video" value="$video" framerate="25"/>
<VideoRectangle name="box" toName="video"/><Labels name="label" toName="video"><Label value="cat"/></Labels></View>"""


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = write_random_images(tmp_path_factory.mktemp("hostile"), {"a.png": (32, 48)}, seed=1)
    write_square_video(root / "clip.mp4", 12)
    (root / "notes.mp4").write_bytes(b"this is not a video at all")
    with ImageHost(root) as server:
        yield server


@pytest.fixture(scope="module")
def client(labeler, host):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", box_threshold=0.3, label_studio_url=host.url,
                        label_studio_api_key=host.token, max_video_bytes=200_000)
    return create_app(settings, labeler).test_client()


def predict(client, tasks, config, context=None):
    return client.post("/predict", json={"tasks": tasks, "label_config": config, "project": "1",
                                         "params": {"context": context}})


def still_serving(client):
    response = predict(client, [{"id": 9, "data": {"image": "/data/upload/a.png"}}], IMAGE)
    assert response.status_code == 200 and response.get_json()["results"][0]["result"]


def test_broken_video_tasks_get_per_task_errors_and_the_rest_succeeds(client, host):
    response = predict(client, [
        {"id": 1, "data": {"video": "/data/upload/notes.mp4"}},
        {"id": 2, "data": {"text": "no video key"}},
        {"id": 3, "data": {"video": "http://127.0.0.1:9/elsewhere.mp4"}},
        {"id": 4, "data": {"video": "/data/upload/clip.mp4"}},
    ], VIDEO)
    assert response.status_code == 200, response.get_data(as_text=True)
    results = response.get_json()["results"]
    assert all("error" in r and r["result"] == [] and " failed: " in r["model_version"] for r in results[:3]), \
        results[:3]
    assert "data.video" in results[1]["error"] and "LABEL_STUDIO_URL's origin" in results[2]["error"]
    assert "result" in results[3] and "error" not in results[3], results[3]
    still_serving(client)


def test_a_video_over_the_size_limit_names_the_setting(labeler, host):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", label_studio_url=host.url,
                        label_studio_api_key=host.token, max_video_bytes=100)
    client = create_app(settings, labeler).test_client()
    (result,) = predict(client, [{"id": 1, "data": {"video": "/data/upload/clip.mp4"}}], VIDEO).get_json()["results"]
    assert "PRELABEL_MAX_VIDEO_BYTES" in result["error"]


@pytest.mark.parametrize("value, message", [
    ({"x": "left", "y": 10, "width": 5, "height": 5, "rectanglelabels": ["cat"]}, "numeric"),
    ({"x": 10, "y": 10, "width": 5, "height": 5, "rectanglelabels": ["dog"]}, "'dog' is not in the labeling config"),
    ({"x": 10, "y": 10, "width": 5, "height": 5, "rectanglelabels": ["cat"]}, "exemplar prompts need a SAM 3 detector"),
])
def test_bad_or_unsupported_exemplar_boxes_are_400s(client, value, message):
    context = {"result": [{"from_name": "exemplar", "to_name": "image", "type": "rectanglelabels",
                           "original_width": 48, "original_height": 32, "value": value}]}
    response = predict(client, [{"id": 1, "data": {"image": "/data/upload/a.png"}}], IMAGE, context)
    assert response.status_code == 400 and message in response.get_json()["error"], response.get_json()
    still_serving(client)


@pytest.mark.parametrize("garbage", [
    {"result": [{"type": "videorectangle", "value": {"sequence": "nope"}}]},
    {"result": "not a list"},
    {"result": [None, 3, "x"]},
])
def test_garbage_interactive_contexts_are_400s_not_crashes(client, garbage):
    response = predict(client, [{"id": 1, "data": {"image": "/data/upload/a.png"}}], IMAGE, garbage)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    still_serving(client)
