"""The one reader of Label Studio result items (every type prelabel reads), the one percent <-> pixel helper, the
one "our newest prediction", and a /predict request parsed once."""

import numpy as np
import pytest
from image_host import ImageHost, write_random_images

from prelabel.core.geometry import mask_to_box
from prelabel.core.uncertainty import EXPLORE_WEIGHT
from prelabel.labelstudio.backend import create_app
from prelabel.labelstudio.brush import mask_to_brush_rle
from prelabel.labelstudio.coordinates import PercentFrame
from prelabel.labelstudio.predict import request as predict_request
from prelabel.labelstudio.predict.request import LabelConfigs
from prelabel.labelstudio.predict.setup import PredictorSetup, planned_version
from prelabel.labelstudio.ranking import rank_tasks
from prelabel.labelstudio.result_items import ResultError, our_newest_prediction, parse_items
from prelabel.labelstudio.task_images import TaskImageFetcher
from prelabel.pipeline import exploration
from prelabel.settings import Settings

SIZE = {"original_width": 200, "original_height": 100}


def test_percent_and_pixels_round_trip():
    frame = PercentFrame(640, 480)
    assert frame.box_to_pixels([10, 20, 5, 50]).tolist() == [64, 96, 96, 336]
    assert frame.to_pixels([[50, 50]]).tolist() == [[320, 240]]
    boxes = np.random.default_rng(0).uniform(0, 300, (50, 2, 2))
    xyxy = np.concatenate([boxes.min(axis=1), boxes.max(axis=1)], axis=1)
    assert np.allclose(frame.box_to_pixels(frame.box_to_percent(xyxy)), xyxy, rtol=0, atol=1e-9)
    points = boxes.reshape(-1, 2)
    assert np.allclose(frame.to_pixels(frame.to_percent(points)), points, rtol=0, atol=1e-9)


def one(item, **kwargs):
    (parsed,) = parse_items([{"id": "r", **item}], types=None, **kwargs)
    return parsed


def test_a_rectangle_is_read_in_pixels_with_its_label_score_and_signals():
    item = one({**SIZE, "type": "rectanglelabels", "from_name": "bbox", "to_name": "image", "score": 0.25,
                "prelabel": {"region": 3, "features": {"score": 0.4}},
                "value": {"x": 10, "y": 20, "width": 30, "height": 40, "rectanglelabels": ["cat"]}})
    assert (item.type, item.from_name, item.to_name, item.label, item.score) == \
        ("rectanglelabels", "bbox", "image", "cat", 0.25)
    assert item.box().tolist() == [20, 20, 80, 60] and item.features == {"score": 0.4} and not item.candidate
    assert item.shape().box_xyxy.tolist() == [20, 20, 80, 60]


def test_a_rotated_rectangle_reads_as_its_bounding_box():
    item = one({**SIZE, "type": "rectanglelabels",
                "value": {"x": 50, "y": 50, "width": 10, "height": 20, "rotation": 90, "rectanglelabels": ["cat"]}})
    assert np.allclose(item.box(), [80, 50, 100, 70], atol=1e-9)  # 20x20 px turned around (100, 50)


def test_a_polygon_is_read_as_pixel_vertices_and_its_mask():
    item = one({**SIZE, "type": "polygonlabels",
                "value": {"points": [[10, 10], [60, 10], [60, 90]], "polygonlabels": ["cat"]}})
    assert item.polygon().tolist() == [[20, 10], [120, 10], [120, 90]]
    shape = item.shape()
    assert shape.box_xyxy.tolist() == [20, 10, 120, 90] and shape.mask.shape == (100, 200) and shape.mask[50, 100]


def test_a_brush_is_read_as_its_mask():
    mask = np.zeros((100, 200), bool)
    mask[10:30, 40:90] = True
    item = one({**SIZE, "type": "brushlabels", "value": {"format": "rle", "rle": mask_to_brush_rle(mask),
                                                         "brushlabels": ["cat"]}})
    assert np.array_equal(item.mask(), mask) and item.box().tolist() == mask_to_box(mask).tolist()


def test_keypoints_are_read_in_the_size_given_over_the_items_own():
    clicks = [{"type": "keypointlabels", "original_width": 10, "original_height": 10,
               "value": {"x": 25, "y": 50, "width": 0.5, "keypointlabels": ["cat"]}},
              {"type": "keypointlabels", "is_positive": False, "value": {"x": 75, "y": 10}}]
    first, second = parse_items(clicks, ["keypointlabels"], frame=PercentFrame(400, 300))
    assert first.point().tolist() == [100, 150] and first.is_positive and first.label == "cat"
    assert second.point().tolist() == [300, 30] and not second.is_positive and second.label is None


def test_a_video_rectangle_gives_its_last_keyframe():
    item = one({"type": "videorectangle", "from_name": "box", "value": {"labels": ["car"], "sequence": [
        {"frame": 9, "x": 1, "y": 2, "width": 3, "height": 4}, {"frame": 3, "x": 5, "y": 6, "width": 7, "height": 8},
        {"frame": 1, "x": 0, "y": 0, "width": 1, "height": 1}]}})
    frame, box = item.last_keyframe()
    assert item.label == "car" and frame == 9 and box.tolist() == [1, 2, 3, 4]
    with pytest.raises(ResultError, match="'r' \\(videorectangle\\) is malformed: value.sequence"):
        one({"type": "videorectangle", "value": {"sequence": [{"frame": "one", "x": 0}]}}).last_keyframe()


def test_an_exploration_candidate_carries_its_weight_and_other_types_are_kept_only_when_asked():
    results = [{**SIZE, "type": "rectanglelabels", "prelabel": {"candidate": True, EXPLORE_WEIGHT: 2.5},
                "value": {"x": 0, "y": 0, "width": 1, "height": 1, "rectanglelabels": ["cat"]}},
               {"type": "choices", "value": {"choices": ["x"]}}, "junk"]
    (shape_item,) = parse_items(results)
    assert shape_item.candidate and shape_item.features == {EXPLORE_WEIGHT: 2.5}
    assert [item.type for item in parse_items(results, types=None)] == ["rectanglelabels", "choices"]
    with pytest.raises(ResultError, match="score must be a number"):
        parse_items([{"type": "choices", "score": "high"}], types=None)


def test_ranking_and_accept_take_the_same_newest_prediction():
    older = {"id": 7, "model_version": "prelabel-a", "created_at": "2026-01-01T10:00:00Z", "score": 0.9, "result": []}
    newer = {"id": 8, "model_version": "prelabel-b", "created_at": "2026-01-02T10:00:00Z", "score": 0.2, "result": []}
    other = {"id": 9, "model_version": "yolo", "created_at": "2026-01-03T10:00:00Z", "score": 0.5, "result": []}
    task = {"id": 1, "data": {"image": "a.png"}, "predictions": [newer, other, older]}  # not in time order
    assert our_newest_prediction(task) is newer
    assert rank_tasks([task])[0].score == 0.2
    undated = {"predictions": [{"model_version": "prelabel-a", "score": 0.9}, {"model_version": "prelabel-b"}]}
    assert our_newest_prediction(undated) == {"model_version": "prelabel-b"}  # a tasks file: the last one
    assert our_newest_prediction({"predictions": [other]}) is None


CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels></View>"""


def test_a_label_config_is_parsed_once_across_requests_and_model_version_once_per_request(
        labeler, tmp_path, monkeypatch):
    parsed = []
    real_parse = predict_request.parse_label_config
    monkeypatch.setattr(predict_request, "parse_label_config", lambda *args: parsed.append(1) or real_parse(*args))
    versions = []
    real_version = labeler.model_version
    monkeypatch.setattr(labeler, "model_version", lambda *a, **k: versions.append(1) or real_version(*a, **k))
    root = write_random_images(tmp_path, {f"{i}.png": (24, 32) for i in range(3)}, seed=2)
    with ImageHost(root) as host:
        client = create_app(Settings(detector="random-tiny", segmenter="random-tiny", box_threshold=0.3,
                                     label_studio_url=host.url, label_studio_api_key=host.token), labeler).test_client()
        for call in range(10):
            tasks = [{"id": i, "data": {"image": f"/data/upload/{i}.png"}} for i in range(3)]
            versions.clear()
            reply = client.post("/predict", json={"tasks": tasks, "label_config": CONFIG, "project": "1"})
            assert reply.status_code == 200 and all("result" in r for r in reply.get_json()["results"])
            assert len(versions) == 1 + len(tasks), "once for the request, once by the Labeler per image it labels"
    assert len(parsed) == 1


VIDEO = """<View><Video name="video" value="$video"/>
<VideoRectangle name="box" toName="video"/><Labels name="label" toName="video"><Label value="cat"/></Labels></View>"""


@pytest.mark.parametrize("xml", [CONFIG, VIDEO])
def test_setup_reports_the_version_predictions_carry_with_exploration_on(labeler, xml):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", device="cpu", box_threshold=0.3,
                        explore_share=0.3)
    config = LabelConfigs().parse(xml)
    setup = PredictorSetup(labeler, TaskImageFetcher(), explore=exploration(settings))
    assert planned_version(settings, config, None) == setup.model_version(config)
