"""prelabel batch on videos: CVAT for video 1.1 XML, COCO per frame, LS video tasks; kill -9 resumes identically."""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from xml.etree import ElementTree

import pytest

from prelabel.cli import main
from video_data import write_square_video

LABELS = "square=bright square,car"
MODELS = ["--detector", "random-tiny", "--segmenter", "", "--device", "cpu", "--box-threshold", "0.3"]
OUTPUTS = ["cvat/clip.xml", "coco/clip.json", "labelstudio_video_tasks.json", "tracks/clip.json"]
FRAMES = 240


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-batch")
    (root / "videos").mkdir()
    write_square_video(root / "videos" / "clip.mp4", FRAMES, second_from=100)
    return root


@pytest.fixture(scope="module")
def clean_run(folder):
    out = folder / "clean"
    assert main(["batch", str(folder / "videos"), "--labels", LABELS, *MODELS, "--out", str(out),
                 "--video-every", "2"]) == 0
    return out


def test_outputs_are_cvat_video_xml_coco_and_labelstudio_tasks(clean_run):
    root = ElementTree.parse(clean_run / "cvat" / "clip.xml").getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task.findtext("size") == str(FRAMES) and task.findtext("mode") == "interpolation"
    assert [e.findtext("name") for e in task.findall("labels/label")] == ["square", "car"]
    tracks = root.findall("track")
    assert tracks and {t.get("label") for t in tracks} <= {"square", "car"}
    for track in tracks:
        frames = [int(b.get("frame")) for b in track.findall("box")]
        assert frames == sorted(set(frames)) and 0 <= frames[0] and frames[-1] < FRAMES
        for box in track.findall("box"):
            assert float(box.get("xtl")) <= float(box.get("xbr")) and float(box.get("ytl")) <= float(box.get("ybr"))
            assert box.get("outside") in ("0", "1") and box.get("keyframe") in ("0", "1")
    coco = json.loads((clean_run / "coco" / "clip.json").read_text())
    assert len(coco["images"]) == FRAMES and all("track_id" in a for a in coco["annotations"])
    (task,) = json.loads((clean_run / "labelstudio_video_tasks.json").read_text())
    assert task["data"]["video"] == "clip.mp4"
    assert all(r["type"] == "videorectangle" for r in task["predictions"][0]["result"])
    assert not (clean_run / ".video-state" / "clip.json").exists()


def test_resume_after_kill_9_gives_identical_outputs(folder, clean_run):
    out = folder / "killed"
    command = [sys.executable, "-m", "prelabel.cli", "batch", str(folder / "videos"), "--labels", LABELS, *MODELS,
               "--out", str(out), "--video-every", "2"]
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ})
    state = out / ".video-state" / "clip.json"
    deadline = time.monotonic() + 120
    while not state.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
        time.sleep(0.01)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = json.loads(state.read_text())["state"]["next_frame"]
    assert 0 < saved < FRAMES, "killed halfway"
    resumed = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    for name in OUTPUTS:
        assert filecmp.cmp(clean_run / name, out / name, shallow=False), name


def test_frame_folder_and_bad_format(folder, tmp_path, caplog):
    import cv2

    from video_data import square_frames

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(square_frames(6)):
        cv2.imwrite(str(frames / f"{i:04d}.png"), frame)
    assert main(["batch", str(frames), "--frames", "--labels", LABELS, *MODELS, "--out", str(tmp_path / "o"),
                 "--format", "cvat"]) == 0
    assert ElementTree.parse(tmp_path / "o" / "cvat" / "frames.xml").getroot().findtext("meta/task/size") == "6"
    assert main(["batch", str(tmp_path / "o"), "--frames", "--labels", LABELS, *MODELS,
                 "--out", str(tmp_path / "p")]) == 2
    assert "not a folder of frame images" in caplog.text
