"""`prelabel predict` as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "prelabel.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_predict_writes_json_and_overlay(tmp_path):
    from skimage import data

    Image.fromarray(data.chelsea()).save(tmp_path / "cat.jpg")
    result = run("predict", "cat.jpg", "--labels", "cat=cat|kitty,eye", "--detector", "random-tiny",
                 "--segmenter", "random-tiny", "--out", "out.json", "--viz", "viz", "--include-masks", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "RANDOM" in result.stderr.upper() or "random-weight" in result.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["random_weights"] is True and doc["errors"] == []
    (image,) = doc["images"]
    assert image["image_size"] == [451, 300]
    assert image["regions"] and {r["label"] for r in image["regions"]} <= {"cat", "eye"}
    assert all("mask_rle" in r and "mask_score" in r for r in image["regions"])
    overlay = np.asarray(Image.open(tmp_path / "viz" / "cat.png"))
    assert overlay.shape == (300, 451, 3)


def test_every_bad_input_is_reported_at_once_before_any_model_loads(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    result = run("predict", "notes.txt", "missing.png", "--labels", "cat", "--detector", str(tmp_path / "nowhere"),
                 "--segmenter", "random-tiny", "--out", "out.json", cwd=tmp_path)
    assert result.returncode == 2
    assert "notes.txt is not an image" in result.stderr
    assert "missing.png does not exist" in result.stderr
    assert "nowhere' does not exist" in result.stderr and "3 problem(s) with the inputs" in result.stderr
    assert "Traceback" not in result.stderr and "random-weight" not in result.stderr, "no model was loaded"
    assert not (tmp_path / "out.json").exists()


def test_an_image_whose_pixels_are_broken_is_counted_and_exits_3(tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:-40])  # a header, then torn pixels
    result = run("predict", "ok.png", "cut.png", "--labels", "cat", "--detector", "random-tiny", "--no-masks",
                 "--out", "out.json", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    assert [e["path"] for e in doc["errors"]] == ["cut.png"] and [i["path"] for i in doc["images"]] == ["ok.png"]


def test_missing_labels_and_bad_model_are_one_line_errors(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    no_labels = run("predict", "a.png", "--detector", "random-tiny", cwd=tmp_path)
    assert no_labels.returncode == 2 and "no labels given" in no_labels.stderr
    bad_model = run("predict", "a.png", "--labels", "cat", "--detector", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert bad_model.returncode == 2 and "local folder" in bad_model.stderr
    assert "Traceback" not in no_labels.stderr + bad_model.stderr


def test_predict_and_batch_with_a_sam3_folder_need_no_segmenter(tmp_path):
    """A SAM 3 folder written by save_pretrained as --detector: masks, polygons and boxes from the one model; the
    default segmenter (not downloadable here) is not loaded at all."""
    from prelabel.models.random_sam3 import save_sam3_folder

    folder = save_sam3_folder(tmp_path / "sam3")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    labels = "car,car door=car door|door"
    result = run("predict", "a.png", "--labels", labels, "--detector", str(folder), "--box-threshold", "0",
                 "--out", "out.json", "--include-masks", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (image,) = json.loads((tmp_path / "out.json").read_text())["images"]
    assert image["meta"]["segmenter"] is None and image["meta"]["detector"] == str(folder)
    assert image["regions"] and all("mask_rle" in r for r in image["regions"])
    assert {r["label"] for r in image["regions"]} <= {"car", "car door"}
    (tmp_path / "images").mkdir()
    (tmp_path / "a.png").rename(tmp_path / "images" / "a.png")
    batch = run("batch", "images", "--labels", labels, "--detector", str(folder), "--box-threshold", "0",
                "--out", "out", "--format", "coco,labelstudio", cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    coco = json.loads((tmp_path / "out" / "coco.json").read_text())
    assert coco["annotations"] and all("segmentation" in a for a in coco["annotations"])
    tasks = json.loads((tmp_path / "out" / "labelstudio_tasks.json").read_text())
    assert {r["type"] for r in tasks[0]["predictions"][0]["result"]} == {"rectanglelabels", "polygonlabels"}


LOADED = """
import sys
from prelabel.cli import build_parser, command_in
from prelabel.settings import Settings
build_parser(Settings(), command_in(sys.argv[1:]))
print(" ".join(sorted(m for m in sys.modules if m.startswith("prelabel.cli.") or m in ("torch", "flask", "sqlalchemy"))))
"""


@pytest.mark.parametrize(("argv", "loaded"), [
    (["--help"], "prelabel.cli.common"),
    (["-v", "fit", "--project", "1"], "prelabel.cli.common prelabel.cli.feedback sqlalchemy"),
    (["cvat", "spec", "--labels", "cat"], "prelabel.cli.common prelabel.cli.cvat"),
])
def test_a_command_line_imports_the_module_of_its_command_only(argv, loaded):
    out = subprocess.run([sys.executable, "-c", LOADED, *argv], capture_output=True, text=True, check=True).stdout
    assert out.split() == loaded.split()
