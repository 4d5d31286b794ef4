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
from typing import Any
from xml.etree import ElementTree

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.core.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Tracks, VideoSource
from prelabel.labelstudio.config import parse_label_config, video_config
from prelabel.labelstudio.results import video_prediction
from prelabel.pipeline.video import TrackLinker, VideoLabeler

VIDEO_FORMATS = ("cvat", "coco", "labelstudio")


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
    unknown = sorted(set(formats) - set(VIDEO_FORMATS))
    if unknown:
        raise PrelabelError(f"unknown --format {', '.join(unknown)} for videos; choose from {', '.join(VIDEO_FORMATS)}")
    version = video_labeler.model_version(labels)
    results: dict[str, Tracks] = {}
    for video in videos:
        key = video.stem if video.is_file() else video.name
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
    written = []
    for key, tracks in results.items():
        if "cvat" in formats:
            written.append(_write(out / "cvat" / f"{key}.xml", cvat_video_xml(tracks, key)))
        if "coco" in formats:
            written.append(_write(out / "coco" / f"{key}.json", json.dumps(coco_frames(tracks, key))))
    if "labelstudio" in formats:
        xml = video_config([label.name for label in labels])
        config = parse_label_config(xml)
        tasks = [{"data": {"video": f"{url_prefix}{_video_name(videos, key)}"},
                  "predictions": [video_prediction(tracks, config, version, 0.0)]} for key, tracks in results.items()]
        written.append(_write(out / "labelstudio_video_tasks.json", json.dumps(tasks)))
        written.append(_write(out / "labelstudio_video_config.xml", xml))
    return written


def _video_name(videos: Sequence[Path], key: str) -> str:
    return next((v.name for v in videos if (v.stem if v.is_file() else v.name) == key), key)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def cvat_video_xml(tracks: Tracks, name: str) -> str:
    """CVAT for video 1.1: one ``<track>`` per track, a ``<box>`` on every frame (``keyframe`` where detected),
    and a closing ``outside="1"`` box after a track ends before the video does (CVAT interpolates otherwise)."""
    info = tracks.info
    root = ElementTree.Element("annotations")
    ElementTree.SubElement(root, "version").text = "1.1"
    meta = ElementTree.SubElement(root, "meta")
    task = ElementTree.SubElement(meta, "task")
    for tag, text in (("name", name), ("size", str(info.frame_count)), ("mode", "interpolation"),
                      ("start_frame", "0"), ("stop_frame", str(info.frame_count - 1))):
        ElementTree.SubElement(task, tag).text = text
    labels = ElementTree.SubElement(task, "labels")
    for label in tracks.label_names:
        element = ElementTree.SubElement(labels, "label")
        ElementTree.SubElement(element, "name").text = label
        ElementTree.SubElement(element, "type").text = "rectangle"
        ElementTree.SubElement(element, "attributes")
    original = ElementTree.SubElement(task, "original_size")
    ElementTree.SubElement(original, "width").text = str(info.width)
    ElementTree.SubElement(original, "height").text = str(info.height)
    for number, track in enumerate(tracks.tracks):
        element = ElementTree.SubElement(root, "track", id=str(number), label=tracks.label_names[track.label_id],
                                         source="auto")
        previous = None
        for frame, box, detected in zip(track.frames, track.boxes, track.detected):
            if previous is not None and frame != previous + 1:  # a gap: the object was lost in between
                _box(element, previous + 1, track.boxes[track.frames.index(previous)], True, True)
            _box(element, frame, box, detected, False)
            previous = frame
        if previous is not None and previous + 1 < info.frame_count:
            _box(element, previous + 1, track.boxes[-1], True, True)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def _box(track: ElementTree.Element, frame: int, box: Sequence[float], keyframe: bool, outside: bool) -> None:
    x1, y1, x2, y2 = box
    ElementTree.SubElement(track, "box", frame=str(frame), keyframe=str(int(keyframe)), outside=str(int(outside)),
                           occluded="0", xtl=f"{x1:.2f}", ytl=f"{y1:.2f}", xbr=f"{x2:.2f}", ybr=f"{y2:.2f}",
                           z_order="0")


def coco_frames(tracks: Tracks, name: str) -> dict[str, Any]:
    """COCO with one image per frame (``file_name`` ``<video>/frame_000123``) and ``track_id`` on each box."""
    info = tracks.info
    images = [{"id": f + 1, "file_name": f"{name}/frame_{f:06d}.jpg", "width": info.width, "height": info.height,
               "frame_index": f} for f in range(info.frame_count)]
    annotations = []
    for track in tracks.tracks:
        for frame, (x1, y1, x2, y2), score in zip(track.frames, track.boxes, track.scores):
            annotations.append({"id": len(annotations) + 1, "image_id": frame + 1, "category_id": track.label_id + 1,
                                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "score": score,
                                "track_id": track.track_id})
    return {"info": {"description": f"prelabel tracks of {name}", "video": info.to_dict()}, "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(tracks.label_names)]}
