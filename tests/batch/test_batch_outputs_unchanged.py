"""``prelabel batch`` writes the bytes it wrote before its format writers moved into their tools' folders (#35).

``data/batch_reference_checkpoint.jsonl`` is the checkpoint of a random-tiny run (three noise images and an
unreadable file; the commit is in ``data/batch_reference_outputs.json``), and that file holds the SHA-256 of every
output the run wrote, for three sets of output options. Each test resumes that checkpoint, so no model runs: the
outputs are the writers' alone, and the same on any CPU. ``data/video_reference_*`` do the same for videos.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from prelabel.cli import main
from prelabel.core.errors import ExitCode

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "batch_reference_outputs.json").read_text(encoding="utf-8"))


def digests(root: Path, out: Path) -> dict[str, str]:
    found = {}
    for path in sorted(out.rglob("*")):
        rel = str(path.relative_to(out))
        if path.is_symlink():
            found[rel] = "-> " + str(Path(os.readlink(path)).relative_to(root))
        elif path.is_file() and path.name != "checkpoint.jsonl":
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize("variant", sorted(REFERENCE["variants"]))
def test_batch_outputs_are_byte_identical_to_the_reference(variant, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # the checkpoint's source and image paths are relative
    for name in ("a.png", "b.png", "sub/c.png", "broken.png"):
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / name).write_bytes(b"")  # listed, never read: the checkpoint has them all
    (tmp_path / "out").mkdir()
    shutil.copy(DATA / "batch_reference_checkpoint.jsonl", tmp_path / "out" / "checkpoint.jsonl")
    expected = REFERENCE["variants"][variant]
    caplog.set_level("INFO")
    assert main([*REFERENCE["args"], *expected["extra_args"]]) == ExitCode.SOME_FAILED
    assert "4 done before, 0 to label" in caplog.text
    assert digests(tmp_path, tmp_path / "out") == expected["files"]


def test_video_batch_outputs_are_byte_identical_to_the_reference(tmp_path, monkeypatch):
    # data/video_reference_tracks.json: the finished tracks of a random-tiny video run; a rerun writes every video
    # format from them (the detector loads to give the model_version; no frame is decoded).
    reference = json.loads((DATA / "video_reference_outputs.json").read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "clip.mp4").write_bytes(b"")
    tracks = json.loads((DATA / "video_reference_tracks.json").read_text(encoding="utf-8"))
    tracks["header"]["video"] = str((tmp_path / "videos" / "clip.mp4").resolve())
    (tmp_path / "out" / "tracks").mkdir(parents=True)
    (tmp_path / "out" / "tracks" / "clip.json").write_text(json.dumps(tracks), encoding="utf-8")
    assert main(reference["args"]) == ExitCode.OK
    written = {k: v for k, v in digests(tmp_path, tmp_path / "out").items() if not k.startswith("tracks/")}
    assert written == reference["files"]
