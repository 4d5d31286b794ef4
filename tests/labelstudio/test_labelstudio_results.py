"""Label config parsing and result types against the Label Studio contract notes."""

import numpy as np
import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.geometry import mask_iou
from prelabel.core.labels import LabelPrompt
from prelabel.core.regions import Regions
from prelabel.core.uncertainty import FEATURES, score_regions
from prelabel.labelstudio.brush import brush_rle_to_mask, mask_to_brush_rle
from prelabel.labelstudio.config import LabelConfigError, parse_label_config
from prelabel.labelstudio.result_items import result_shapes
from prelabel.labelstudio.results import REVIEW_NOTE, regions_to_results

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="bbox" toName="image">
    <Label value="cat" predicted_values="cat,kitten"/><Label value="dog"/>
  </RectangleLabels>
  <PolygonLabels name="poly" toName="image"><Label value="cat"/><Label value="dog"/></PolygonLabels>
  <BrushLabels name="brush" toName="image"><Label value="dog"/></BrushLabels>
</View>"""


def test_parse_config_controls_and_prompts():
    config = parse_label_config(CONFIG, {"dog": LabelPrompt("dog", ("puppy", "dog"))})
    assert config.image_key == "image" and config.image_name == "image"
    assert [(c.name, c.result_type, c.labels) for c in config.controls] == [
        ("bbox", "rectanglelabels", ("cat", "dog")),
        ("poly", "polygonlabels", ("cat", "dog")),
        ("brush", "brushlabels", ("dog",)),
    ]
    assert {p.name: p.prompts for p in config.prompts} == {"cat": ("cat", "kitten"), "dog": ("puppy", "dog")}
    assert config.needs_masks


@pytest.mark.parametrize(
    "xml, message",
    [
        ("", "no labeling config"),
        ("<View><Image name='i' value='$i'/>", "not valid XML"),
        ("<View><Text name='t' value='$t'/><Labels name='l' toName='t'><Label value='a'/></Labels></View>", "no <Image>"),
        ("<View><Image name='i' value='$i'/><Choices name='c' toName='i'><Choice value='a'/></Choices></View>",
         "no RectangleLabels"),
        ("<View><Image name='i' value='$i'/><RectangleLabels name='r' toName='x'><Label value='a'/></RectangleLabels>"
         "</View>", "not an <Image>"),
        ("<View><Image name='i' value='$i'/><RectangleLabels name='r' toName='i'/></View>", "no <Label>"),
        ("<View><Image name='i' value='http://x/a.png'/><RectangleLabels name='r' toName='i'><Label value='a'/>"
         "</RectangleLabels></View>", "task data"),
        ('<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><View>&b;</View>', "XML"),
    ],
)
def test_unsupported_configs_are_clear_errors(xml, message):
    with pytest.raises(LabelConfigError, match=message):
        parse_label_config(xml)


def make_regions():
    masks = np.zeros((2, 60, 80), dtype=bool)
    masks[0, 10:40, 20:60] = True
    masks[1, 30:50, 5:25] = True
    return Regions(
        image_size=(80, 60), label_names=("cat", "dog"),
        boxes_xyxy=[[20, 10, 60, 40], [5, 30, 25, 50]], scores=[0.9, 0.6], label_ids=[0, 1],
        masks=masks, data={"mask_score": [0.8, 0.5]},
    )


def test_results_follow_the_stored_format():
    regions = make_regions()
    results = regions_to_results(regions, parse_label_config(CONFIG))
    by_type = {}
    for r in results:
        by_type.setdefault(r["type"], []).append(r)
        assert r["to_name"] == "image" and r["original_width"] == 80 and r["original_height"] == 60
        assert r["image_rotation"] == 0 and 0 <= r["score"] <= 1
        assert len(r["value"][r["type"]]) == 1, "every region carries exactly one label"
    assert len(by_type["rectanglelabels"]) == 2 and len(by_type["polygonlabels"]) == 2
    assert [r["value"]["brushlabels"] for r in by_type["brushlabels"]] == [["dog"]], "only labels of that control"
    cat_box = by_type["rectanglelabels"][0]["value"]
    assert cat_box["rectanglelabels"] == ["cat"] and cat_box["rotation"] == 0
    assert cat_box["x"] == pytest.approx(25.0) and cat_box["width"] == pytest.approx(50.0)
    assert cat_box["y"] == pytest.approx(100 * 10 / 60) and cat_box["height"] == pytest.approx(50.0)
    for r in by_type["polygonlabels"]:
        points = np.array(r["value"]["points"])
        assert points.shape[1] == 2 and (points >= 0).all() and (points <= 100).all() and r["value"]["closed"]
    brush = by_type["brushlabels"][0]["value"]
    assert brush["format"] == "rle" and all(isinstance(v, int) for v in brush["rle"])
    assert np.array_equal(brush_rle_to_mask(brush["rle"], 80, 60), regions.masks[1])


def test_results_read_back_as_the_same_shapes_with_signals_and_review_notes():
    regions = score_regions(make_regions(), [0.35, 0.35])
    results = regions_to_results(regions, parse_label_config(CONFIG), review_threshold=0.45)
    shapes = result_shapes(results)
    assert len(shapes) == len(results)
    confidence = 1 - regions.uncertainty
    for item, shape in zip(results, shapes):
        i = item["prelabel"]["region"]
        assert shape.label == regions.label_names[regions.label_ids[i]] and shape.from_name == item["from_name"]
        assert shape.features == item["prelabel"]["features"] and set(shape.features) == set(FEATURES)
        assert ("meta" in item) == (confidence[i] < 0.45), "only low-confidence regions carry the review note"
        if item["type"] == "rectanglelabels":
            assert np.allclose(shape.box_xyxy, regions.boxes_xyxy[i], atol=1e-3)
        elif item["type"] == "brushlabels":
            assert np.array_equal(shape.mask, regions.masks[i])
        else:
            assert mask_iou(shape.mask[None], regions.masks[i][None])[0, 0] > 0.85
    assert any(REVIEW_NOTE in item["meta"]["text"][0] for item in results if "meta" in item)


def test_rotated_rectangle_reads_back_as_its_bounding_box():
    item = {"type": "rectanglelabels", "from_name": "bbox", "original_width": 200, "original_height": 100,
            "value": {"x": 50, "y": 50, "width": 10, "height": 20, "rotation": 90, "rectanglelabels": ["cat"]}}
    (shape,) = result_shapes([item])
    # 20x20 px rotated 90 degrees around its top-left corner (100, 50): x in [80, 100], y in [50, 70]
    assert np.allclose(shape.box_xyxy, [80, 50, 100, 70], atol=1e-3)


def test_malformed_result_items_are_a_clear_error_and_other_types_are_skipped():
    assert result_shapes([{"type": "choices", "value": {"choices": ["x"]}}, "junk"]) == []
    with pytest.raises(PrelabelError, match="'r1' \\(polygonlabels\\) is malformed"):
        result_shapes([{"id": "r1", "type": "polygonlabels", "original_width": 10, "original_height": 10,
                        "value": {"polygonlabels": ["a"]}}])


SIZE = {"original_width": 4, "original_height": 2}


@pytest.mark.parametrize(("item", "message"), [
    ({"type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5}}, "must be a list holding"),
    ({"type": "rectanglelabels", "value": {"x": "left", "y": 1, "width": 5, "height": 5,
                                           "rectanglelabels": ["a"]}}, "must be numbers"),
    ({"type": "rectanglelabels", "original_width": "wide", "value": {"rectanglelabels": ["a"]}}, "whole numbers"),
    ({"type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["a"]},
      "score": "high"}, "score must be a number"),
    ({"type": "polygonlabels", "value": {"points": [[1, 2], [3]], "polygonlabels": ["a"]}}, "number pairs"),
    ({"type": "polygonlabels", "value": {"points": "1,2", "polygonlabels": ["a"]}}, "number pairs"),
    ({"type": "brushlabels", "value": {"rle": [0, 0, 0, 32, 1, 2], "brushlabels": ["a"]}}, "brush RLE of a 4x2"),
    ({"type": "brushlabels", "value": {"rle": [255, 255, 255, 255, 0], "brushlabels": ["a"]}}, "brush RLE"),
    ({"type": "brushlabels", "value": {"rle": "abc", "brushlabels": ["a"]}}, "brush RLE"),
])
def test_each_malformed_field_is_named(item, message):
    with pytest.raises(PrelabelError, match=message):
        result_shapes([{"id": "r", **SIZE, **item}])


def test_a_brush_header_is_checked_before_anything_is_allocated():
    mask = np.zeros((2, 4), bool)
    mask[1, 1:3] = True
    rle = mask_to_brush_rle(mask)
    assert (brush_rle_to_mask(rle, 4, 2) == mask).all()
    assert brush_rle_to_mask(rle, 400, 200) is None  # the header says 4x2: nothing decoded, nothing allocated
    assert brush_rle_to_mask(rle[:-2], 4, 2) is None  # truncated stream


def test_a_bug_while_reading_results_is_not_passed_off_as_a_malformed_item(monkeypatch):
    from prelabel.labelstudio import result_items

    monkeypatch.setattr(result_items, "polygon_to_mask", lambda *a: np.zeros((1, 2, 3))[:, :, 5])
    with pytest.raises(IndexError):
        result_shapes([{"id": "r", **SIZE, "type": "polygonlabels",
                        "value": {"points": [[0, 0], [50, 50], [0, 50]], "polygonlabels": ["a"]}}])
