"""`prelabel eval`: COCO AP via pycocotools, 1.0 for perfect predictions and lower for perturbed ones."""

import copy
import json

import pytest

from prelabel.cli import main
from prelabel.qa.evaluation import evaluate


def square(x, y, size):
    return [float(x), float(y), float(x + size), float(y), float(x + size), float(y + size), float(x), float(y + size)]


@pytest.fixture()
def ground_truth(tmp_path):
    annotations = []
    for image_id in (1, 2):
        for x, y, size, category in [(10, 10, 40, 1), (80, 30, 50, 2), (20, 100, 30, 1)]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x + image_id, y, size, size], "area": size * size, "iscrowd": 0,
                                "segmentation": [square(x + image_id, y, size)]})
    document = {"images": [{"id": i, "file_name": f"img{i}.png", "width": 200, "height": 160} for i in (1, 2)],
                "annotations": annotations,
                "categories": [{"id": 1, "name": "rivet"}, {"id": 2, "name": "crack"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(document))
    return path, document


def predictions_from(document, path, shift=0.0, drop_every=0):
    """A batch-style COCO document made from the ground truth (other ids, scores), optionally shifted."""
    predictions = copy.deepcopy(document)
    predictions["images"] = [{**image, "id": image["id"] + 100} for image in predictions["images"]]
    kept = []
    for i, annotation in enumerate(predictions["annotations"]):
        if drop_every and i % drop_every == 0:
            continue
        annotation["image_id"] += 100
        annotation["score"] = 0.9 - 0.01 * i
        annotation["bbox"][0] += shift
        annotation["segmentation"] = [[v + shift if j % 2 == 0 else v for j, v in enumerate(annotation["segmentation"][0])]]
        kept.append(annotation)
    predictions["annotations"] = kept
    path.write_text(json.dumps(predictions))
    return path


def test_identical_predictions_score_ap_1(ground_truth, tmp_path, capsys):
    gt_path, document = ground_truth
    pred_path = predictions_from(document, tmp_path / "pred.json")
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    for iou_type in ("bbox", "segm"):
        assert report[iou_type]["summary"]["AP"] == pytest.approx(1.0)
        assert report[iou_type]["per_category"] == {"rivet": {"AP": 1.0, "AP50": 1.0, "AR100": 1.0},
                                                    "crack": {"AP": 1.0, "AP50": 1.0, "AR100": 1.0}}
    table = capsys.readouterr().out
    assert "[bbox]" in table and "[segm]" in table and "rivet" in table and "crack" in table


def test_perturbed_predictions_score_lower(ground_truth, tmp_path):
    gt_path, document = ground_truth
    shifted = evaluate(gt_path, predictions_from(document, tmp_path / "shifted.json", shift=8.0))
    missing = evaluate(gt_path, predictions_from(document, tmp_path / "missing.json", drop_every=3))
    for report in (shifted, missing):
        for iou_type in ("bbox", "segm"):
            assert 0.0 < report[iou_type]["summary"]["AP"] < 0.95
    assert missing["bbox"]["per_category"]["crack"]["AP"] == 1.0  # only rivets were dropped
    assert missing["bbox"]["per_category"]["rivet"]["AR100"] == pytest.approx(2 / 4)
