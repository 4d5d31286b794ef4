"""`prelabel qa` flags every planted defect in COCO and Label Studio exports, and nothing else."""

import json

from prelabel.cli import main
from prelabel.core.errors import ExitCode

CLEAN = [("rivet", [20, 20, 30, 30]), ("crack", [100, 60, 60, 40])]  # COCO xywh, 200 x 150 images
PLANTED = {  # image -> (kind it must raise, its extra shapes)
    "tiny.png": ("tiny", [("rivet", [10, 100, 2, 12])]),
    "degenerate.png": ("degenerate", [("crack", [50, 100, 0, 20])]),
    "out_of_frame.png": ("out_of_frame", [("rivet", [180, 100, 40, 30])]),
    "duplicate.png": ("duplicate", [("rivet", [21, 20, 30, 30])]),
    "label_overlap.png": ("label_overlap", [("crack", [20, 20, 30, 31])]),
}


def coco_file(path, images):
    document = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "rivet"}, {"id": 2, "name": "crack"}]}
    ids = {"rivet": 1, "crack": 2}
    for image_id, (name, shapes) in enumerate(images.items(), start=1):
        document["images"].append({"id": image_id, "file_name": name, "width": 200, "height": 150})
        for label, (x, y, w, h) in shapes:
            document["annotations"].append({
                "id": len(document["annotations"]) + 1, "image_id": image_id, "category_id": ids[label],
                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    path.write_text(json.dumps(document))
    return path


def rect(label, x, y, w, h, rid="r"):
    return {"id": rid, "from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 400,
            "original_height": 300, "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                                              "rectanglelabels": [label]}}


def ls_export(path):
    polygon = {"id": "p", "from_name": "poly", "to_name": "image", "type": "polygonlabels", "original_width": 400,
               "original_height": 300, "value": {"points": [[10, 10], [40, 12], [30, 50]], "closed": True,
                                                 "polygonlabels": ["crack"]}}
    tasks = [
        {"id": 1, "data": {"image": "/data/upload/1/agree.png"}, "annotations": [
            {"id": 11, "completed_by": 1, "result": [rect("rivet", 10, 10, 20, 20), rect("crack", 50, 50, 30, 10, "s")]},
            {"id": 12, "completed_by": 2, "result": [rect("rivet", 10.5, 10, 20, 20), rect("crack", 50, 51, 30, 10, "s")]},
        ]},
        {"id": 2, "data": {"image": "/data/upload/1/disagree.png"}, "annotations": [
            {"id": 21, "completed_by": 1, "result": [rect("rivet", 10, 10, 20, 20)]},
            {"id": 22, "completed_by": {"id": 2, "email": "b@example.com"}, "result": [rect("rivet", 60, 60, 20, 20)]},
        ]},
        {"id": 3, "data": {"image": "/data/upload/1/edges.png"}, "annotations": [
            {"id": 31, "completed_by": 1, "result": [rect("rivet", 90, 10, 20, 20, "out"), rect("crack", 5, 60, 0.5, 5, "tiny")]},
        ]},
        {"id": 4, "data": {"image": "/data/upload/1/predicted.png"}, "annotations": [],
         "predictions": [{"model_version": "prelabel-x", "score": 0.5, "result": [polygon, rect("rivet", 60, 60, 10, 10)]}]},
    ]
    path.write_text(json.dumps(tasks))
    return path


def run_qa(*argv):
    code = main(["qa", *map(str, argv)])
    folder = argv[argv.index("--out") + 1]
    return code, json.loads((folder / "qa_report.json").read_text()), (folder / "qa_report.html").read_text()


def test_coco_planted_defects_are_flagged_and_nothing_else(tmp_path):
    images = {"clean.png": CLEAN, **{name: CLEAN + extra for name, (_, extra) in PLANTED.items()}}
    code, report, html = run_qa(coco_file(tmp_path / "coco.json", images), "--out", tmp_path / "r")
    assert code == ExitCode.SOME_FAILED
    assert sorted((i["kind"], i["key"]) for i in report["issues"]) == sorted((k, n) for n, (k, _) in PLANTED.items())
    assert report["images"] == 6 and report["format"] == "coco"
    assert html.count("data:image/png;base64,") == len(PLANTED) and "clean.png" not in html


def test_clean_coco_flags_nothing(tmp_path):
    code, report, html = run_qa(coco_file(tmp_path / "coco.json", {"a.png": CLEAN, "b.png": CLEAN}),
                                "--out", tmp_path / "r")
    assert code == 0 and report["issues"] == [] and set(report["counts"].values()) == {0}
    assert "data:image/png" not in html


def test_gold_set_scores_annotations(tmp_path):
    gold = coco_file(tmp_path / "gold.json", {"a.png": CLEAN, "b.png": CLEAN})
    work = coco_file(tmp_path / "work.json", {"a.png": CLEAN, "b.png": [CLEAN[0], ("crack", [10, 100, 30, 30])]})
    code, report, _ = run_qa(work, "--gold", gold, "--out", tmp_path / "r")
    assert [(i["kind"], i["key"]) for i in report["issues"]] == [("gold_mismatch", "b.png")]
    assert report["gold"] == {"annotations": {"precision": 0.75, "recall": 0.75, "f1": 0.75}}


def test_label_studio_export_consensus_and_shapes(tmp_path):
    code, report, html = run_qa(ls_export(tmp_path / "export.json"), "--out", tmp_path / "r")
    assert report["format"] == "labelstudio" and code == ExitCode.SOME_FAILED
    assert sorted((i["kind"], i["key"].rsplit("/", 1)[1]) for i in report["issues"]) == [
        ("low_consensus", "disagree.png"), ("out_of_frame", "edges.png"), ("tiny", "edges.png")]
    # rivet shifted 2 px of 80, crack 3 px of 30: mean matched IoU of the two annotators
    assert report["consensus"]["/data/upload/1/agree.png"] == round((78 / 82 + 27 / 33) / 2, 4)
    assert report["consensus"]["/data/upload/1/disagree.png"] == 0.0
    assert "b@example.com" in html
