"""A 64 MP photo (drone, aerial) with 100 regions: `prelabel batch --tile 1024` finishes with every output format
within 4 GiB, and a resumed run turns the same checkpoint into the same outputs."""

import filecmp
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

SIDE = 8000  # 64 MP
LIMIT_GIB = 4.0
COMMAND = ["batch", "--labels", "roof,car,tree", "--tile", "1024", "--detector", "random-tiny", "--segmenter",
           "random-tiny", "--device", "cpu"]
OUTPUTS = ["coco.json", "coco_polygons.json", "labelstudio_tasks.json", "errors.jsonl", "yolo/data.yaml",
           "yolo/labels/aerial.txt"]


def write_aerial(path: Path) -> None:
    """A smooth 8000x8000 scene with 300 discs (a small JPEG; 192 MB once decoded)."""
    y, x = np.mgrid[0:SIDE:8, 0:SIDE:8]
    image = cv2.resize(np.stack([x * 255 // SIDE, y * 255 // SIDE, (x + y) * 255 // (2 * SIDE)], -1).astype(np.uint8),
                       (SIDE, SIDE), interpolation=cv2.INTER_NEAREST)
    rng = np.random.default_rng(0)
    for _ in range(300):
        center = (int(rng.integers(0, SIDE)), int(rng.integers(0, SIDE)))
        cv2.circle(image, center, int(rng.integers(20, 200)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 85])


def run_sampled(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``prelabel ARGS`` in a child process; its exit and its peak RSS (GiB, children included, every 20 ms)."""
    env = {**os.environ, "PRELABEL_MAX_PIXELS": str(SIDE * SIDE + 1)}
    process = subprocess.Popen([sys.executable, "-m", "prelabel.cli", *args], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, watched = 0, psutil.Process(process.pid)

    def sample() -> None:
        nonlocal peak
        while process.poll() is None:
            try:
                peak = max(peak, sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)]))
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate(timeout=300)
    sampler.join()
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr), peak / 1024**3


@pytest.fixture(scope="module")
def large_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("large")
    write_aerial(root / "images" / "aerial.jpg")
    done, peak = run_sampled([*COMMAND[:1], str(root / "images"), *COMMAND[1:], "--out", str(root / "out")], root)
    return root, done, peak


def test_a_64_mp_image_with_100_regions_is_labeled_within_4_gib_in_every_format(large_run):
    root, done, peak = large_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert peak <= LIMIT_GIB, f"peak RSS {peak:.2f} GiB for a 64 MP image (limit {LIMIT_GIB} GiB)"
    coco = json.loads((root / "out" / "coco.json").read_text())
    assert coco["images"] == [{"id": 1, "file_name": "aerial.jpg", "width": SIDE, "height": SIDE}]
    annotations = coco["annotations"]
    assert len(annotations) == 100, "random-tiny on 64 tiles: capped at max_detections"
    assert all(a["segmentation"]["size"] == [SIDE, SIDE] and a["area"] > 0 for a in annotations)
    polygons = json.loads((root / "out" / "coco_polygons.json").read_text())["annotations"]
    assert len(polygons) == 100 and all(max(a["segmentation"][0]) <= SIDE for a in polygons)
    (task,) = json.loads((root / "out" / "labelstudio_tasks.json").read_text())
    assert {item["type"] for item in task["predictions"][0]["result"]} == {"rectanglelabels", "polygonlabels"}
    assert len((root / "out" / "yolo" / "labels" / "aerial.txt").read_text().splitlines()) == 100


def test_a_resumed_run_turns_the_checkpoint_into_the_same_outputs(large_run):
    root, first, _ = large_run
    assert first.returncode == 0, first.stderr[-3000:]
    kept = root / "first"
    kept.mkdir()
    for name in OUTPUTS:
        (kept / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "out" / name).rename(kept / name)
    resumed, peak = run_sampled([*COMMAND[:1], str(root / "images"), *COMMAND[1:], "--out", str(root / "out")], root)
    assert resumed.returncode == 0 and "1 done before, 0 to label" in resumed.stderr, resumed.stderr[-3000:]
    assert peak <= LIMIT_GIB, f"writing the outputs of a 64 MP checkpoint peaked at {peak:.2f} GiB"
    for name in OUTPUTS:
        assert filecmp.cmp(kept / name, root / "out" / name, shallow=False), name
