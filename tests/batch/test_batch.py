"""`prelabel batch`: every output format, errors file, resume after a real kill -9, and the Ray engine."""

import filecmp
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from batch_data import write_shape_images
from prelabel.batch.job import JobOptions, run_job
from prelabel.cli import main
from prelabel.core.errors import ExitCode
from prelabel.core.labels import parse_labels
from prelabel.core.uncertainty import FEATURES
from prelabel.settings import Settings

LABELS = "box=red box|rectangle,disc=green circle"
MODELS = ["--detector", "random-tiny", "--segmenter", "random-tiny", "--device", "cpu"]
OUTPUTS = ["coco.json", "coco_polygons.json", "labelstudio_tasks.json", "labelstudio_config.xml", "errors.jsonl",
           "yolo/data.yaml"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    write_shape_images(root / "images", 14, size=(160, 120))
    (root / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    return root


@pytest.fixture(scope="module")
def clean_run(folder):
    """An uninterrupted run, in this process."""
    # One of the 15 images is corrupt: the other 14 are labeled and the exit code says some failed.
    assert main(["batch", str(folder / "images"), "--labels", LABELS, *MODELS, "--out", str(folder / "clean")]) == ExitCode.SOME_FAILED
    return folder / "clean"


def test_coco_loads_in_pycocotools_with_masks_and_scores(clean_run):
    coco = COCO(str(clean_run / "coco.json"))
    assert len(coco.getImgIds()) == 14 and [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["box", "disc"]
    annotations = coco.loadAnns(coco.getAnnIds())
    assert annotations, "random-tiny finds regions on every shape image"
    for annotation in annotations:
        image = coco.loadImgs(annotation["image_id"])[0]
        mask = coco.annToMask(annotation)
        assert mask.shape == (image["height"], image["width"]) and mask.sum() == annotation["area"]
        assert 0 <= annotation["score"] <= 1 and 0 <= annotation["mask_score"] <= 1
    cvat = COCO(str(clean_run / "coco_polygons.json"))
    assert all(isinstance(a["segmentation"], list) and "score" not in a for a in cvat.loadAnns(cvat.getAnnIds()))
    assert {i["file_name"] for i in cvat.loadImgs(cvat.getImgIds())} == {i["file_name"] for i in coco.loadImgs(coco.getImgIds())}


def test_label_studio_tasks_follow_the_contract(clean_run):
    tasks = json.loads((clean_run / "labelstudio_tasks.json").read_text())
    config = (clean_run / "labelstudio_config.xml").read_text()
    assert len(tasks) == 14
    for task in tasks:
        assert Path(task["data"]["image"]).is_file()
        (prediction,) = task["predictions"]
        assert prediction["model_version"].startswith("prelabel-random-") and 0 <= prediction["score"] <= 1
        for result in prediction["result"]:
            assert f'name="{result["from_name"]}"' in config and result["to_name"] == "image"
            assert (result["original_width"], result["original_height"]) == (160, 120)
            value = result["value"]
            labels = value[result["type"]]
            assert len(labels) == 1 and labels[0] in ("box", "disc")
            if result["type"] == "rectanglelabels":
                assert 0 <= value["x"] <= value["x"] + value["width"] <= 100.001
                assert 0 <= value["y"] <= value["y"] + value["height"] <= 100.001
            else:
                assert result["type"] == "polygonlabels" and value["closed"] is True
                assert np.all((np.array(value["points"]) >= 0) & (np.array(value["points"]) <= 100))
            assert set(result["prelabel"]["features"]) == set(FEATURES), "feedback on these can be learned from"


def test_batch_output_ranks_least_confident_first(clean_run, capsys):
    tasks = json.loads((clean_run / "labelstudio_tasks.json").read_text())
    scores = sorted(t["predictions"][0]["score"] for t in tasks)
    assert main(["rank", str(clean_run), "--out", str(clean_run.parent / "ranked.json")]) == 0
    ranked = json.loads((clean_run.parent / "ranked.json").read_text())
    assert [r["score"] for r in ranked] == scores and len(ranked) == 14


def test_yolo_files_parse(clean_run):
    yolo = clean_run / "yolo"
    assert "names:\n  0: box\n  1: disc" in (yolo / "data.yaml").read_text()
    labels = sorted((yolo / "labels").rglob("*.txt"))
    assert len(labels) == 14 and len(list((yolo / "images").rglob("*.png"))) == 14
    assert (yolo / "images" / "nested" / "img0000.png").resolve().is_file()
    lines = [line.split() for path in labels for line in path.read_text().splitlines()]
    assert lines
    for fields in lines:
        assert fields[0] in ("0", "1") and len(fields) >= 7 and len(fields) % 2 == 1
        assert all(0 <= float(v) <= 1 for v in fields[1:])


def test_corrupt_image_lands_in_errors_file(clean_run):
    (error,) = [json.loads(line) for line in (clean_run / "errors.jsonl").read_text().splitlines()]
    assert error["key"] == "corrupt.jpg" and "not" in error["error"] and "image" in error["error"]


def test_resume_after_kill_9_gives_identical_outputs(folder, clean_run):
    command = [sys.executable, "-m", "prelabel.cli", "batch", str(folder / "images"), "--labels", LABELS, *MODELS,
               "--out", str(folder / "killed"), "--threads", "1"]  # other threads than the clean run: same bytes
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = folder / "killed" / "checkpoint.jsonl"
    deadline = time.monotonic() + 90
    while not (checkpoint.exists() and checkpoint.read_bytes().count(b"\n") >= 4):  # header + 3 images
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = checkpoint.read_bytes().count(b"\n") - 1
    assert 3 <= finished < 15, "killed halfway"
    with checkpoint.open("ab") as handle:  # as if the kill had landed mid-write
        handle.write(b'{"key": "img0013.png", "uri": "ima')
    resumed = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == ExitCode.SOME_FAILED, resumed.stderr
    assert f"{finished} done before, {15 - finished} to label" in resumed.stderr
    for name in OUTPUTS:
        assert filecmp.cmp(clean_run / name, folder / "killed" / name, shallow=False), name
    clean_labels = sorted(p.relative_to(clean_run) for p in (clean_run / "yolo" / "labels").rglob("*.txt"))
    assert clean_labels == sorted(p.relative_to(folder / "killed") for p in (folder / "killed" / "yolo" / "labels").rglob("*.txt"))
    assert all(filecmp.cmp(clean_run / p, folder / "killed" / p, shallow=False) for p in clean_labels)
    keys = [json.loads(line).get("key") for line in checkpoint.read_text().splitlines()[1:]]
    assert len(keys) == len(set(keys)) == 15


def test_resume_with_other_labels_is_refused(folder, clean_run, caplog):
    argv = ["batch", str(folder / "images"), "--labels", "box", *MODELS, "--out", str(clean_run)]
    assert main(argv) == 2
    assert "different labels, model_version; rerun the same command to resume it, or pass --restart" in caplog.text


def test_ray_engine_on_local_ray_matches_local_engine(folder, clean_run):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        argv = ["batch", str(folder / "images"), "--labels", LABELS, *MODELS, "--out", str(folder / "ray"),
                "--engine", "ray", "--ray-actors", "2"]
        assert main(argv) == ExitCode.SOME_FAILED
    finally:
        ray.shutdown()
    for name in OUTPUTS:
        assert filecmp.cmp(clean_run / name, folder / "ray" / name, shallow=False), name


def test_a_run_where_no_image_could_be_read_still_writes_every_format(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    argv = ["batch", str(tmp_path / "images"), "--labels", LABELS, *MODELS, "--out", str(tmp_path / "out")]
    assert main(argv) == ExitCode.SOME_FAILED
    assert all((tmp_path / "out" / name).is_file() for name in OUTPUTS)
    assert json.loads((tmp_path / "out" / "coco.json").read_text())["images"] == []


def test_coco_only_output_needs_no_label_studio_config(folder, tmp_path):
    broken = tmp_path / "config.xml"
    broken.write_text("<View><Image", encoding="utf-8")  # would fail to parse, were it read
    out = tmp_path / "coco-only"
    assert main(["batch", str(folder / "images"), "--labels", LABELS, *MODELS, "--out", str(out), "--format", "coco",
                 "--labelstudio-config", str(broken)]) == ExitCode.SOME_FAILED
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.jsonl", "coco.json", "errors.jsonl"]


def test_a_batch_job_runs_from_python_without_the_cli(folder, tmp_path):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", device="cpu")
    options = JobOptions(str(folder / "images"), tmp_path / "job", parse_labels(LABELS), formats=("coco",))
    result = run_job(options, settings)
    assert result.exit_code == ExitCode.SOME_FAILED and result.failed == ("corrupt.jpg",) and result.bugs == ()
    assert set(result.written) == {"errors", "coco"}
    assert len(json.loads(result.written["coco"].read_text())["images"]) == 14
    again = run_job(options, settings)  # resumed: every image is in the checkpoint
    assert again.written["coco"].read_bytes() == result.written["coco"].read_bytes()
