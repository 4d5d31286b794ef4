"""End to end against a real Label Studio: a video task gets valid videorectangle predictions, once."""

from __future__ import annotations

import pytest

from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.demo import BackendProcess
from video_data import write_square_video

pytestmark = pytest.mark.e2e

VIDEO_CONFIG = """<View>
  <Labels name="videoLabels" toName="video" allowEmpty="true"><Label value="square"/><Label value="car"/></Labels>
  <Video name="video" value="$video" framerate="25.0"/>
  <VideoRectangle name="box" toName="video"/>
</View>"""
FRAMES = 30


def test_video_task_gets_videorectangle_predictions_once(label_studio, tmp_path):
    api = LabelStudioClient(label_studio.url, label_studio.token)
    video = write_square_video(tmp_path / "squares.mp4", FRAMES, fps=25.0, second_from=12)
    env = {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "", "PRELABEL_BOX_THRESHOLD": "0.3",
           "PRELABEL_VIDEO_EVERY": "5", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "PRELABEL_FEEDBACK_DB": str(tmp_path / "fb.sqlite3")}
    backend = BackendProcess(env, tmp_path / "backend.log")
    try:
        backend.wait_ready()
        project_id = api.create_project("video", VIDEO_CONFIG)
        (task_id,) = api.import_images(project_id, [video])
        task = api.call("GET", f"/api/tasks/{task_id}")
        assert str(task["data"]["video"]).endswith(".mp4")
        api.connect_backend(project_id, backend.url)
        api.retrieve_predictions(project_id)
        (prediction,) = api.predictions(task_id)
        assert prediction["model_version"].startswith("prelabel-random-") and 0 <= prediction["score"] <= 1
        assert prediction["result"], "random-tiny at threshold 0.3 detects on every keyframe"
        for item in prediction["result"]:
            assert (item["type"], item["from_name"], item["to_name"]) == ("videorectangle", "box", "video")
            value = item["value"]
            assert value["labels"][0] in ("square", "car") and len(value["labels"]) == 1
            assert value["framesCount"] == FRAMES and abs(value["duration"] - FRAMES / 25) < 1e-6
            frames = [k["frame"] for k in value["sequence"]]
            assert frames == sorted(set(frames)) and 1 <= frames[0] and frames[-1] <= FRAMES
            assert value["sequence"][-1]["enabled"] is False
            for key in value["sequence"]:
                assert 0 <= key["x"] <= 100 and 0 <= key["y"] <= 100 and key["width"] >= 0 and key["height"] >= 0
                assert key["x"] + key["width"] <= 100.001 and key["y"] + key["height"] <= 100.001
                assert key["rotation"] == 0 and abs(key["time"] - key["frame"] / 25) < 1e-3
            assert 0 <= item["score"] <= 1
        api.retrieve_predictions(project_id)  # the same model_version: Label Studio skips the task
        assert len(api.predictions(task_id)) == 1
    finally:
        backend.stop()
