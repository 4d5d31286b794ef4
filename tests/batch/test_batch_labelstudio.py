"""`prelabel batch` against a real Label Studio: a project as the source, predictions pushed back through
the SDK, and the tasks file imported into another project."""

import json

import numpy as np
import pytest

from batch_data import write_shape_images
from prelabel.cli import main
from prelabel.labelstudio.client import LabelStudioClient

pytestmark = pytest.mark.e2e

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="box"/><Label value="disc"/></RectangleLabels>
<PolygonLabels name="poly" toName="image"><Label value="box"/><Label value="disc"/></PolygonLabels></View>"""
MODELS = ["--detector", "random-tiny", "--segmenter", "random-tiny", "--device", "cpu", "--box-threshold", "0.3"]


@pytest.fixture(scope="module")
def api(label_studio):
    return LabelStudioClient(label_studio.url, label_studio.token)


def test_project_source_with_push_stores_predictions(api, label_studio, tmp_path, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    project = api.create_project("batch source", CONFIG)
    task_ids = api.import_images(project, write_shape_images(tmp_path / "images", 3, size=(96, 72)))
    argv = ["batch", f"ls:{project}", "--labels", "box,disc", *MODELS, "--out", str(tmp_path / "out"), "--push",
            "--format", "labelstudio"]
    assert main(argv) == 0
    assert main(argv) == 0  # a rerun resumes: nothing new to label and nothing pushed twice
    tasks = json.loads((tmp_path / "out" / "labelstudio_tasks.json").read_text())
    for task_id, task in zip(sorted(task_ids), tasks, strict=True):
        (stored,) = api.predictions(task_id)
        (written,) = task["predictions"]
        assert stored["model_version"] == written["model_version"]
        assert stored["score"] == pytest.approx(written["score"])
        assert [r["value"] for r in stored["result"]] == [r["value"] for r in written["result"]]
        assert {r["from_name"] for r in stored["result"]} == {"bbox", "poly"}
    assert api.call("GET", f"/api/projects/{project}")["model_version"] == tasks[0]["predictions"][0]["model_version"]


def test_tasks_file_imports_into_label_studio(api, tmp_path):
    write_shape_images(tmp_path / "images", 2, size=(96, 72))
    argv = ["batch", str(tmp_path / "images"), "--labels", "box,disc", *MODELS, "--out", str(tmp_path / "out"),
            "--format", "labelstudio", "--image-url-prefix", "/data/local-files/?d=ds/"]
    assert main(argv) == 0
    project = api.create_project("batch import", (tmp_path / "out" / "labelstudio_config.xml").read_text())
    tasks = json.loads((tmp_path / "out" / "labelstudio_tasks.json").read_text())
    api.call("POST", f"/api/projects/{project}/import", json=tasks)
    stored = sorted(api.tasks(project), key=lambda t: t["data"]["image"])
    assert [t["data"]["image"] for t in stored] == ["/data/local-files/?d=ds/img0001.png",
                                                    "/data/local-files/?d=ds/nested/img0000.png"]
    for task, expected in zip(stored, tasks, strict=True):
        (prediction,) = api.predictions(task["id"])
        assert prediction["result"] == expected["predictions"][0]["result"]
        assert np.isclose(prediction["score"], expected["predictions"][0]["score"])
