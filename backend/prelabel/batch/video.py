"""``prelabel batch`` over videos: tracks per video, resumable at keyframe granularity, written as CVAT for video
1.1 XML (importable as a CVAT task's annotations), COCO per frame and Label Studio video tasks.

Each video has a state file (``.video-state/<key>.json``: the run's header and the linker state after the last
checkpointed keyframe), replaced atomically (write, fsync, rename) every ``checkpoint_every`` keyframes, so a
``kill -9`` loses at most those keyframes; a finished video's tracks go to ``tracks/<key>.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from prelabel.batch.outputs import check_formats, write_video_outputs
from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.core.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Tracks, VideoSource
from prelabel.pipeline.video import TrackLinker, VideoLabeler


def video_sources(source: str, frames: bool = False) -> list[Path] | None:
    """The videos a batch source names (a video file, a folder of videos, with ``frames`` a folder of frame
    images), else None (an image batch)."""
    path = Path(source)
    if frames:
        if not path.is_dir() or not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            raise PrelabelError(f"--frames: {source} is not a folder of frame images")
        return [path]
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return [path]
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if videos:
            return videos
    return None


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def run_video_batch(video_labeler: VideoLabeler, videos: Sequence[Path], labels: Sequence[LabelPrompt], out: Path,
                    formats: Sequence[str], restart: bool = False, fps: float = 25.0, max_frames: int = 200_000,
                    checkpoint_every: int = 5, url_prefix: str = "") -> list[Path]:
    """Pre-label every video (resuming where a previous run stopped) and write the outputs; returns the files."""
    check_formats(formats, videos=True)
    version = video_labeler.model_version(labels)
    results: dict[str, Tracks] = {}
    names: dict[str, str] = {}  # key -> the video's file name, which the Label Studio tasks point at
    for video in videos:
        key = video.stem if video.is_file() else video.name
        names[key] = video.name
        header = {"video": str(video.resolve()), "model_version": version}
        done = out / "tracks" / f"{key}.json"
        state_file = out / ".video-state" / f"{key}.json"
        if restart:
            done.unlink(missing_ok=True)
            state_file.unlink(missing_ok=True)
        if done.exists():
            stored = json.loads(done.read_text(encoding="utf-8"))
            if stored.get("header") == header:
                results[key] = Tracks.from_dict(stored["tracks"])
                continue
        resume = None
        if state_file.exists():
            stored = json.loads(state_file.read_text(encoding="utf-8"))
            if stored.get("header") != header:
                raise PrelabelError(f"{state_file} was written with other models, labels or options; rerun with "
                                    f"--restart to start this video over")
            resume = stored["state"]
        counter = {"n": 0}

        def save(linker: TrackLinker, state_file: Path = state_file, header: dict = header) -> None:
            counter["n"] += 1
            if counter["n"] % checkpoint_every == 0:
                _atomic_write(state_file, json.dumps({"header": header, "state": linker.to_dict()}))

        source = VideoSource(video, fps, max_frames=max_frames)
        tracks = video_labeler.prelabel(source, labels, resume=resume, on_keyframe=save)
        for key_name in ("seconds", "keyframes_this_run"):  # a resumed run must write the same bytes
            tracks.meta.pop(key_name, None)
        _atomic_write(done, json.dumps({"header": header, "tracks": tracks.to_dict()}))
        state_file.unlink(missing_ok=True)
        results[key] = tracks
    return write_video_outputs(out, results, names, labels, formats, version, url_prefix)
