"""A bug is never reported as bad input: injected into each entry point, it surfaces as a 500 with the request id
and a logged traceback, a non-zero exit with its traceback, or an errors.jsonl entry with its traceback; the same
entry points still answer real bad input with a 4xx / exit 2."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from image_host import ImageHost, write_random_images
from PIL import Image

from prelabel.cli import main
from prelabel.core.errors import ExitCode
from prelabel.labelstudio.backend import create_app
from prelabel.pipeline.labeler import Labeler
from prelabel.settings import Settings, SettingsError

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="cat"/></KeyPointLabels>
</View>"""
TINY = ["--detector", "random-tiny", "--segmenter", "random-tiny", "--device", "cpu"]


def bug(*_args, **_kwargs):
    raise ValueError("an injected bug: shapes do not broadcast")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with ImageHost(write_random_images(tmp_path_factory.mktemp("images"), {"a.png": (60, 80)})) as server:
        yield server


@pytest.fixture()
def client(labeler, host, tmp_path):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", label_studio_url=host.url,
                        label_studio_api_key=host.token, feedback_db=str(tmp_path / "feedback.sqlite3"))
    return create_app(settings, labeler).test_client()


def assert_500_with_request_id(response, caplog) -> None:
    body = response.get_json()
    assert response.status_code == 500, body
    assert body["request_id"] == response.headers["X-Request-ID"] and body["request_id"] in body["error"]
    assert "bug" in body["error"] and "ValueError" in body["error"] or "KeyError" in body["error"]
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "prelabel.server.app"]
    assert record.exc_info is not None and getattr(record, "request_id", None) in (body["request_id"], None)


def predict(client, context=None, **task_data):
    task = {"id": 1, "data": {"image": "/data/upload/1/a.png", **task_data}}
    return client.post("/predict", json={"tasks": [task], "label_config": CONFIG, "project": "1.1",
                                         "params": {"context": context}})


CLICK = {"result": [{"type": "keypointlabels", "is_positive": True, "from_name": "kp", "to_name": "image",
                     "value": {"x": 50.0, "y": 50.0, "keypointlabels": ["cat"]}}]}


def test_a_bug_in_predict_is_a_500_with_the_request_id_and_the_server_keeps_serving(client, monkeypatch, caplog):
    monkeypatch.setattr(Labeler, "predict", bug)
    assert_500_with_request_id(predict(client), caplog)
    assert client.get("/health").status_code == 200, "the server keeps serving"
    monkeypatch.undo()
    assert predict(client).status_code == 200
    bad = client.post("/predict", json={"tasks": "not a list", "label_config": CONFIG})
    assert bad.status_code == 400, "bad input is still a 400"


def test_a_bug_in_a_click_is_a_500_and_a_malformed_click_a_400(client, monkeypatch, caplog):
    monkeypatch.setattr(Labeler, "click", bug)
    assert_500_with_request_id(predict(client, CLICK), caplog)
    monkeypatch.undo()
    assert predict(client, CLICK).status_code == 200
    malformed = {"result": [{**CLICK["result"][0], "value": {"x": "left", "y": 1, "keypointlabels": ["cat"]}}]}
    response = predict(client, malformed)
    assert response.status_code == 400 and "numeric" in response.get_json()["error"]


def test_a_bug_in_the_webhook_is_a_500_and_a_bad_webhook_a_400(client, monkeypatch, caplog):
    import prelabel.labelstudio.backend as backend

    event = {"action": "ANNOTATION_CREATED", "project": {"id": 1}, "task": {"id": 1, "data": {}},
             "annotation": {"id": 1, "result": []}}
    monkeypatch.setattr(backend, "handle_webhook", lambda *a, **k: {}["status"])
    response = client.post("/webhook", json=event)
    assert_500_with_request_id(response, caplog)
    monkeypatch.undo()
    bad = client.post("/webhook", data="not json", content_type="application/json")
    assert bad.status_code == 400


def image_folder(tmp_path, count: int = 3):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


def test_a_bug_in_prelabel_predict_exits_non_zero_with_its_traceback(tmp_path, monkeypatch):
    folder = image_folder(tmp_path, 1)
    args = ["predict", str(folder / "0.png"), "--labels", "cat", *TINY, "--out", str(tmp_path / "p.json")]
    monkeypatch.setattr(Labeler, "predict", bug)
    with pytest.raises(ValueError, match="injected bug"):  # the console script prints it and exits 1
        main(args)
    monkeypatch.undo()
    assert main(args) == ExitCode.OK
    assert main(["predict", str(folder / "missing.png"), "--labels", "cat", *TINY]) == ExitCode.USAGE


def test_a_bug_in_prelabel_batch_is_counted_kept_with_its_traceback_and_retried(tmp_path, monkeypatch, caplog):
    folder = image_folder(tmp_path)
    (folder / "broken.png").write_bytes(b"not an image")
    real = Labeler.predict
    calls = {"n": 0}

    def second_fails(self, *args, **kwargs):
        calls["n"] += 1
        return bug() if calls["n"] == 2 else real(self, *args, **kwargs)

    monkeypatch.setattr(Labeler, "predict", second_fails)
    caplog.set_level("INFO")
    out = tmp_path / "out"
    args = ["batch", str(folder), "--labels", "cat", *TINY, "--out", str(out)]
    assert main(args) == ExitCode.BUG, "a bug is never passed off as an unreadable image (exit 3)"
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    (found,) = [e for e in errors if e.get("bug")]
    assert "injected bug" in found["error"] and "Traceback" in found["traceback"] and "ValueError" in found["traceback"]
    (unreadable,) = [e for e in errors if not e.get("bug")]
    assert unreadable["uri"].endswith("broken.png") and "traceback" not in unreadable
    assert any(r.exc_info for r in caplog.records if r.name == "prelabel.batch.runner"), "the traceback is logged"
    assert "hit a bug in prelabel" in caplog.text and "could not be read" in caplog.text
    monkeypatch.undo()
    caplog.clear()
    assert main(args) == ExitCode.SOME_FAILED, "the resume retries the bug's image; the broken one stays failed"
    assert "labeled 1 image(s), 0 unreadable" in caplog.text
    assert len((out / "errors.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("name, value", [("box_threshold", 1.5), ("nms_iou", -0.1), ("max_detections", 0),
                                         ("video_every", 0), ("max_in_flight", 0), ("fit_beta", 0.0),
                                         ("detector_convert_after", 0)])
def test_out_of_range_settings_are_refused_at_load_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=rf"setting {name} \(PRELABEL_{name.upper()}\) must be"):
        Settings.load(env={f"PRELABEL_{name.upper()}": str(value)})
    with pytest.raises(SettingsError, match=f"setting {name} "):
        Settings(**{name: value})
