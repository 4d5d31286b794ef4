"""SAM 3 behind the Label Studio backend: text pre-labels with masks from one model, clicks on its cached
features, and "label one, find all" exemplar boxes from an ``exemplar`` control; in-process and against a
real Label Studio."""

import numpy as np
import pytest
from image_host import ImageHost
from PIL import Image

from prelabel.labelstudio.backend import create_app
from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.config import parse_label_config
from prelabel.labelstudio.demo import BackendProcess
from prelabel.models.random_sam3 import save_sam3_folder
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="car"/><Label value="car door"/></RectangleLabels>
<PolygonLabels name="poly" toName="image"><Label value="car"/><Label value="car door"/></PolygonLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="car"/></KeyPointLabels>
<RectangleLabels name="exemplar" toName="image" smart="true" smartOnly="true"><Label value="car"/><Label value="car door"/></RectangleLabels>
</View>"""
SIZE = (96, 72)


def click(label="car"):
    return {"result": [{"original_width": SIZE[0], "original_height": SIZE[1], "from_name": "kp", "to_name": "image",
                        "type": "keypointlabels", "is_positive": True,
                        "value": {"x": 40.0, "y": 50.0, "width": 1.0, "keypointlabels": [label]}}]}


def exemplar(label="car door", negative=False):
    item = {"original_width": SIZE[0], "original_height": SIZE[1], "from_name": "exemplar", "to_name": "image",
            "type": "rectanglelabels", "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 25.0,
                                                  "rotation": 0, "rectanglelabels": [label]}}
    return {"result": [item, {**item, "is_positive": False, "value": {**item["value"], "x": 60.0}}] if negative
            else [item]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_sam3_folder(tmp_path_factory.mktemp("sam3"))


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam3-images")
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)).save(
        root / "a.png")
    with ImageHost(root) as server:
        yield server


def test_an_exemplar_control_is_an_input_not_an_output():
    config = parse_label_config(CONFIG)
    assert config.exemplar_controls == ("exemplar",)
    assert [c.name for c in config.controls] == ["bbox", "poly"]


def test_sam3_prelabels_clicks_and_finds_similar_through_the_backend(folder, host):
    settings = Settings(detector=str(folder), segmenter="", device="cpu", box_threshold=0.0,
                        label_studio_url=host.url, label_studio_api_key=host.token)
    labeler = build_labeler(settings)
    assert labeler.segmenter is None, "SAM 3 segments itself: no second segmenter is loaded"
    client = create_app(settings, labeler).test_client()
    task = {"id": 1, "data": {"image": f"{host.url}/a.png"}}

    def post(context=None):
        response = client.post("/predict", json={"tasks": [task], "label_config": CONFIG, "project": "1",
                                                 "params": {"context": context}})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["results"][0]

    prelabel = post()
    kinds = {r["from_name"] for r in prelabel["result"]}
    assert kinds == {"bbox", "poly"}, "boxes and polygons from SAM 3's own masks; the exemplar control stays empty"
    assert {r["value"][r["type"]][0] for r in prelabel["result"]} <= {"car", "car door"}
    encoded = labeler.detector.encoder_calls
    clicked = post(click())
    assert clicked["result"] and {r["type"] for r in clicked["result"]} == {"polygonlabels"}
    similar = post(exemplar())
    assert similar["result"] and {r["value"][r["type"]][0] for r in similar["result"]} == {"car door"}
    assert {r["from_name"] for r in similar["result"]} <= {"bbox", "poly"}
    steered = post(exemplar(negative=True))
    assert "result" in steered
    assert labeler.detector.encoder_calls == encoded, "clicks and exemplars reuse the cached vision features"
    unknown = client.post("/predict", json={"tasks": [task], "label_config": CONFIG, "project": "1",
                                            "params": {"context": exemplar(label="bicycle")}})
    assert unknown.status_code == 400 and "bicycle" in unknown.get_json()["error"]


@pytest.mark.e2e
def test_sam3_in_a_real_label_studio(label_studio, folder, tmp_path):
    api = LabelStudioClient(label_studio.url, label_studio.token)
    env = {"PRELABEL_DETECTOR": str(folder), "PRELABEL_BOX_THRESHOLD": "0.0",  # the default segmenter: not loaded
           "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "PRELABEL_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")}
    backend = BackendProcess(env, tmp_path / "backend.log")
    try:
        backend.wait_ready()
        image = tmp_path / "a.png"
        Image.fromarray(np.random.default_rng(4).integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)).save(image)
        project = api.create_project("sam3", CONFIG)
        (task,) = api.import_images(project, [image])
        ml = api.connect_backend(project, backend.url)
        api.retrieve_predictions(project)
        (stored,) = api.predictions(task)
        assert stored["result"] and {r["from_name"] for r in stored["result"]} == {"bbox", "poly"}
        for context, kinds in ((click(), {"polygonlabels"}), (exemplar(), {"rectanglelabels", "polygonlabels"})):
            reply = api.call("POST", f"/api/ml/{ml}/interactive-annotating", json={"task": task, "context": context})
            result = reply["data"]["result"]
            assert result and {r["type"] for r in result} <= kinds
            for r in result:
                assert (r["original_width"], r["original_height"]) == SIZE
    finally:
        backend.stop()
