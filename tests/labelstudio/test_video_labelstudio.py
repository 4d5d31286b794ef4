"""Label Studio video: <Video> + <VideoRectangle> + <Labels> configs, videorectangle results, /predict on a video."""

from __future__ import annotations

import pytest
from image_host import ImageHost

from prelabel.core.video import Track, Tracks, VideoInfo
from prelabel.labelstudio.backend import create_app
from prelabel.labelstudio.config import LabelConfigError, parse_label_config
from prelabel.labelstudio.results import tracks_to_results
from prelabel.pipeline import Labeler
from prelabel.settings import Settings
from video_data import BrightSquareDetectorDouble, square_at, write_square_video

VIDEO_CONFIG = """<View>
  <Labels name="videoLabels" toName="video" allowEmpty="true">
    <Label value="square" predicted_values="bright square"/><Label value="car"/>
  </Labels>
  <Video name="video" value="$video" framerate="25.0"/>
  <VideoRectangle name="box" toName="video"/>
</View>"""


def test_video_config():
    config = parse_label_config(VIDEO_CONFIG)
    assert config.is_video and config.image_key == "video" and config.framerate == 25.0
    assert [(c.name, c.tag, c.to_name, c.labels) for c in config.controls] == [
        ("box", "VideoRectangle", "video", ("square", "car"))]
    assert [p.prompts for p in config.prompts] == [("bright square",), ("car",)]
    assert not parse_label_config("""<View><Image name="i" value="$i"/>
        <RectangleLabels name="b" toName="i"><Label value="a"/></RectangleLabels></View>""").is_video
    for bad, match in [
        ('<View><Video name="v" value="$v"/><VideoRectangle name="b" toName="v"/></View>', "no <Labels"),
        ('<View><Video name="v" value="$v"/><VideoRectangle name="b" toName="x"/></View>', "not a <Video>"),
        ('<View><Video name="v" value="v.mp4"/><VideoRectangle name="b" toName="v"/>'
         '<Labels name="l" toName="v"><Label value="a"/></Labels></View>', "task data"),
    ]:
        with pytest.raises(LabelConfigError, match=match):
            parse_label_config(bad)


def test_results_are_thinned_keyframes_with_ls_frame_numbers():
    track = Track(3, 0)
    for f in range(0, 30):  # moves right 2 px/frame until 15, then stands still
        x = 2 * min(f, 15)
        track.add(f, [x, 10, x + 20, 30], 0.8, f % 10 == 0)
    gap = Track(4, 1)
    for f in [*range(5, 10), *range(20, 25)]:  # lost between 10 and 19
        gap.add(f, [50, 50, 60, 60], 0.4, True)
    tracks = Tracks(VideoInfo(100, 50, 25.0, 50), ("square", "car"), [track, gap])
    first, second = tracks_to_results(tracks, parse_label_config(VIDEO_CONFIG), tolerance=0.5, review_threshold=0.5)
    assert first["type"] == "videorectangle" and first["from_name"] == "box" and first["to_name"] == "video"
    value = first["value"]
    assert value["labels"] == ["square"] and value["framesCount"] == 50 and value["duration"] == 2.0
    assert [k["frame"] for k in value["sequence"]] == [1, 16, 30]
    assert [k["enabled"] for k in value["sequence"]] == [True, True, False]
    assert value["sequence"][1] == {"frame": 16, "enabled": True, "x": 30.0, "y": 20.0, "width": 20.0,
                                    "height": 40.0, "rotation": 0, "time": 0.64}
    assert first["score"] == 0.8 and "meta" not in first and second["meta"]["text"][0].startswith("prelabel: review")
    assert [(k["frame"], k["enabled"]) for k in second["value"]["sequence"]] == [
        (6, True), (10, False), (21, True), (25, False)]
    assert second["value"]["labels"] == ["car"]


@pytest.fixture()
def video_host(tmp_path):
    write_square_video(tmp_path / "clip.mp4", 40, fps=25.0, second_from=20)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with ImageHost(tmp_path) as server:
        yield server


@pytest.fixture()
def client(video_host, tmp_path):
    settings = Settings(detector="random-tiny", segmenter="", label_studio_url=video_host.url,
                        label_studio_api_key=video_host.token, video_every=5,
                        feedback_db=str(tmp_path / "feedback.sqlite3"))
    return create_app(settings, Labeler(BrightSquareDetectorDouble(), None)).test_client()


def predict(client, tasks):
    return client.post("/predict", json={"tasks": tasks, "label_config": VIDEO_CONFIG, "project": "1.1",
                                         "params": {"context": None}})


def test_predict_a_video_task(client):
    version = client.post("/setup", json={"project": "1.1", "schema": VIDEO_CONFIG}).get_json()["model_version"]
    response = predict(client, [{"id": 1, "data": {"video": "/data/upload/1/clip.mp4"}},
                                {"id": 2, "data": {"video": "/data/upload/1/bad.mp4"}}])
    assert response.status_code == 200
    good, bad = response.get_json()["results"]
    assert good["model_version"] == version and 0 <= good["score"] <= 1
    assert [r["prelabel"]["track_id"] for r in good["result"]] == [1, 2]
    moving, still = (r["value"] for r in good["result"])
    assert moving["framesCount"] == 40 and moving["labels"] == ["square"]
    assert moving["sequence"][0]["frame"] == 1 and moving["sequence"][-1] == {**moving["sequence"][-1],
                                                                              "frame": 40, "enabled": False}
    assert len(moving["sequence"]) <= 4, "a straight constant-speed track needs few keyframes"
    for key in moving["sequence"]:
        f = key["frame"] - 1
        assert abs(key["x"] * 160 / 100 - square_at(f)[0]) <= 1.5
    assert still["sequence"][0]["frame"] == 21  # the second square appears at frame index 20 (keyframe 20)
    assert bad["result"] == [] and "not a video" in bad["error"]
    assert bad["model_version"].endswith(" failed: video unreadable or too large")


def test_video_url_limits(client, video_host, tmp_path):
    app = create_app(Settings(detector="random-tiny", segmenter="", label_studio_url=video_host.url,
                              label_studio_api_key=video_host.token, max_video_bytes=1000,
                              feedback_db=str(tmp_path / "f.sqlite3")), Labeler(BrightSquareDetectorDouble(), None))
    (result,) = predict(app.test_client(), [{"id": 1, "data": {"video": "/data/upload/1/clip.mp4"}}]).get_json()[
        "results"]
    assert "PRELABEL_MAX_VIDEO_BYTES" in result["error"]
    (result,) = predict(client, [{"id": 1, "data": {"video": "http://10.1.2.3/x.mp4"}}]).get_json()["results"]
    assert "PRELABEL_ALLOWED_HOSTS" in result["error"] and result["model_version"].endswith(" failed: video URL refused")



def test_a_box_drawn_on_a_frame_is_propagated_forward(video_host, tmp_path):
    """Interactive on a video: the annotator's videorectangle comes back with its own id and keyframes, extended
    by the tracker (a test double with the Tracker interface) for PRELABEL_VIDEO_PROPAGATE_FRAMES frames."""
    from video_data import TemplateTrackerDouble

    settings = Settings(detector="", segmenter="", label_studio_url=video_host.url, label_studio_api_key=video_host.token,
                        video_propagate_frames=12, video_tolerance=0.01, feedback_db=str(tmp_path / "f.sqlite3"))
    tracker = TemplateTrackerDouble()
    client = create_app(settings, Labeler(BrightSquareDetectorDouble(), None, tracker=tracker)).test_client()
    x, y = square_at(4)
    drawn = {"id": "abc123", "from_name": "box", "to_name": "video", "type": "videorectangle",
             "value": {"framesCount": 40, "duration": 1.6, "labels": ["square"], "sequence": [
                 {"frame": 5, "enabled": True, "x": 100 * x / 160, "y": 100 * y / 96, "width": 100 * 24 / 160,
                  "height": 100 * 24 / 96, "rotation": 0, "time": 0.2}]}}
    response = client.post("/predict", json={"tasks": [{"id": 1, "data": {"video": "/data/upload/1/clip.mp4"}}],
                                             "label_config": VIDEO_CONFIG, "project": "1",
                                             "params": {"context": {"result": [drawn]}}})
    assert response.status_code == 200, response.get_data(as_text=True)
    (result,) = response.get_json()["results"][0]["result"]
    assert result["id"] == "abc123" and result["type"] == "videorectangle" and result["value"]["labels"] == ["square"]
    sequence = result["value"]["sequence"]
    assert sequence[0]["frame"] == 5 and sequence[-1]["frame"] > 5 and sequence[-1]["frame"] <= 5 + 12 + 1
    for key in sequence:
        expected_x, _ = square_at(key["frame"] - 1)
        assert abs(key["x"] * 160 / 100 - expected_x) <= 2.5, key
    assert tracker.calls >= 1
    without = create_app(settings, Labeler(BrightSquareDetectorDouble(), None)).test_client()
    refused = without.post("/predict", json={"tasks": [{"id": 1, "data": {"video": "/data/upload/1/clip.mp4"}}],
                                             "label_config": VIDEO_CONFIG, "project": "1",
                                             "params": {"context": {"result": [drawn]}}})
    assert refused.status_code == 400 and "PRELABEL_VIDEO_TRACKER" in refused.get_json()["error"]
