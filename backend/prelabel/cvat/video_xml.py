"""CVAT for video 1.1 XML: tracks as CVAT imports them as a task's annotations."""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree import ElementTree

from prelabel.core.video import Tracks


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
