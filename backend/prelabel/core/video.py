"""Videos, tool-free: frames streamed from a file or a frame folder, and tracks of per-frame boxes.

Frames are decoded one at a time with OpenCV (its wheel bundles FFmpeg: no system ffmpeg is needed), so memory
does not grow with the length of a video. URLs are downloaded to a temporary file by the caller (the tool
adapters, with their fetch limits) and opened here as files.

A :class:`Tracks` holds what a video pre-annotation is: one :class:`Track` per object (a stable id, a label, a
box on every frame it spans, which of those frames were detected rather than tracked or interpolated) and, per
frame, a :class:`~prelabel.core.regions.Regions` with a ``track_id`` column (:meth:`Tracks.frame`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.regions import Regions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_MAX_FRAMES = 200_000


class VideoError(PrelabelError):
    """A video that cannot be read (missing, not a video, too large); the message says what to change."""


@dataclass(frozen=True)
class VideoInfo:
    """Size and timing of a video: ``fps`` frames per second, ``frame_count`` frames, ``duration`` seconds."""

    width: int
    height: int
    fps: float
    frame_count: int

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "fps": round(self.fps, 4),
                "frame_count": self.frame_count, "duration": round(self.duration, 4)}


class VideoSource:
    """A video file or a folder of frame images, read one frame at a time (RGB ``uint8``).

    ``fps`` is used for frame folders (they carry no timing) and for files whose container reports none.
    """

    def __init__(self, path: str | Path, fps: float = 25.0, max_pixels: int = 50_000_000,
                 max_frames: int = DEFAULT_MAX_FRAMES) -> None:
        self.path = Path(path)
        self._files: list[Path] | None = None
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise VideoError(f"{self.path} holds no frame images ({', '.join(IMAGE_SUFFIXES)})")
            first = _read_image(self._files[0])
            height, width = first.shape[:2]
            self.info = VideoInfo(width, height, float(fps), len(self._files))
        elif self.path.is_file():
            capture = cv2.VideoCapture(str(self.path))
            try:
                if not capture.isOpened():
                    raise VideoError(f"{self.path} is not a video OpenCV can decode (mp4/avi/mov/mkv/webm)")
                width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
                height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
                count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
                native_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            finally:
                capture.release()
            if width <= 0 or height <= 0:
                raise VideoError(f"{self.path} is not a video OpenCV can decode (no frame size)")
            if count <= 0:
                count = _count_frames(self.path)
            if count <= 0:
                raise VideoError(f"{self.path} holds no frames")
            self.info = VideoInfo(width, height, native_fps if native_fps > 0 else float(fps), count)
        else:
            raise VideoError(f"{self.path} does not exist (pass a video file or a folder of frame images)")
        if self.info.width * self.info.height > max_pixels:
            raise VideoError(f"{self.path}: frames of {self.info.width}x{self.info.height} are over the limit of "
                             f"{max_pixels} pixels (PRELABEL_MAX_PIXELS)")
        if self.info.frame_count > max_frames:
            raise VideoError(f"{self.path} has {self.info.frame_count} frames, over the limit of {max_frames} "
                             f"(PRELABEL_MAX_VIDEO_FRAMES); split the video or raise the limit")

    def __len__(self) -> int:
        return self.info.frame_count

    def frames(self, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, frame)`` for ``range(start, stop, step)``; skipped frames are not decoded."""
        stop = self.info.frame_count if stop is None else min(stop, self.info.frame_count)
        if self._files is not None:
            for index in range(start, stop, step):
                yield index, self._folder_frame(index)
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            if start > 0:
                capture.set(cv2.CAP_PROP_POS_FRAMES, start)
            index = start
            while index < stop:
                if (index - start) % step == 0:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    yield index, _rgb(frame, self.info.size)
                elif not capture.grab():
                    break
                index += 1
        finally:
            capture.release()

    def select(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, frame)`` for increasing ``indices``; the frames in between are skipped, not decoded."""
        wanted = sorted(set(int(i) for i in indices if 0 <= i < self.info.frame_count))
        if not wanted:
            return
        if self._files is not None:
            for index in wanted:
                yield index, self._folder_frame(index)
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = wanted[0]
            if index > 0:
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            for target in wanted:
                while index < target:
                    if not capture.grab():
                        return
                    index += 1
                ok, frame = capture.read()
                if not ok:
                    return
                index += 1
                yield target, _rgb(frame, self.info.size)
        finally:
            capture.release()

    def frames_backward(self, start: int, stop: int, chunk: int = 32) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, frame)`` from ``start`` down to ``stop`` (inclusive), read in chunks of ``chunk`` frames."""
        high = start
        while high >= stop:
            low = max(stop, high - chunk + 1)
            block = list(self.frames(low, high + 1))
            yield from reversed(block)
            high = low - 1

    def frame(self, index: int) -> np.ndarray:
        """One frame."""
        if not 0 <= index < self.info.frame_count:
            raise VideoError(f"frame {index} is outside {self.path} (0..{self.info.frame_count - 1})")
        return next(self.frames(index, index + 1))[1]

    def _folder_frame(self, index: int) -> np.ndarray:
        assert self._files is not None
        return _rgb(cv2.cvtColor(_read_image(self._files[index]), cv2.COLOR_RGB2BGR), self.info.size)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoError(f"{path} is not an image OpenCV can read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _rgb(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (bgr.shape[1], bgr.shape[0]) != size:  # frame folders with mixed sizes: the first frame's size wins
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while capture.grab():
            count += 1
    finally:
        capture.release()
    return count


def write_video(path: str | Path, frames: Iterator[np.ndarray] | Sequence[np.ndarray], fps: float = 25.0) -> Path:
    """Write RGB frames as an ``mp4v`` MP4 (the codec OpenCV's wheel can write; Label Studio serves it)."""
    path = Path(path)
    writer = None
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise VideoError(f"cannot write {path} with OpenCV's mp4v encoder")
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path


# Tracks.


@dataclass
class Track:
    """One object through a video: a box on every frame from ``frames[0]`` to ``frames[-1]``.

    ``detected`` marks the frames whose box came from the detector (or the annotator's prompt); the others were
    tracked or interpolated. ``scores`` are per frame (detector confidence on detected frames, the tracker's
    object score otherwise); :attr:`score` summarises the track.
    """

    track_id: int
    label_id: int
    frames: list[int] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)

    def add(self, frame: int, box: Sequence[float], score: float, detected: bool) -> None:
        if self.frames and frame <= self.frames[-1]:
            raise ValueError(f"track {self.track_id}: frame {frame} is not after {self.frames[-1]}")
        self.frames.append(int(frame))
        self.boxes.append([round(float(v), 2) for v in box])  # what to_dict writes: a resumed run is identical
        self.scores.append(round(float(score), 4))
        self.detected.append(bool(detected))

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def score(self) -> float:
        """The mean score over the detected frames (all frames when none was detected)."""
        picked = [s for s, d in zip(self.scores, self.detected) if d] or self.scores
        return float(np.mean(picked)) if picked else 0.0

    @property
    def boxes_array(self) -> np.ndarray:
        return np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)

    def box_at(self, frame: int) -> np.ndarray | None:
        if not self.frames or not self.frames[0] <= frame <= self.frames[-1]:
            return None
        index = int(np.searchsorted(self.frames, frame))
        return self.boxes_array[index] if self.frames[index] == frame else None

    def to_dict(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "label_id": self.label_id, "frames": self.frames,
                "boxes": self.boxes, "scores": self.scores, "detected": self.detected}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Track:
        return cls(int(d["track_id"]), int(d["label_id"]), list(d["frames"]), [list(b) for b in d["boxes"]],
                   list(d["scores"]), list(d["detected"]))


@dataclass
class Tracks:
    """Every track of one video, with the video's size and timing and the label names tracks index."""

    info: VideoInfo
    label_names: tuple[str, ...]
    tracks: list[Track] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tracks)

    def frame(self, index: int) -> Regions:
        """The regions on one frame, with a ``track_id`` column (and ``detected``: 1 detected, 0 not)."""
        rows = [(t, t.box_at(index)) for t in self.tracks]
        rows = [(t, box, t.scores[t.frames.index(index)], t.detected[t.frames.index(index)])
                for t, box in rows if box is not None]
        width, height = self.info.size
        boxes = np.array([np.clip(b, 0, [width, height, width, height]) for _, b, _, _ in rows],
                         dtype=np.float32).reshape(-1, 4)
        return Regions(self.info.size, self.label_names, boxes,
                       np.clip([s for _, _, s, _ in rows], 0, 1), [t.label_id for t, _, _, _ in rows],
                       data={"track_id": [t.track_id for t, _, _, _ in rows],
                             "detected": [float(d) for _, _, _, d in rows]}, meta={"frame": index})

    @property
    def labels(self) -> list[str]:
        return [self.label_names[t.label_id] for t in self.tracks]

    def to_dict(self) -> dict[str, Any]:
        return {"video": self.info.to_dict(), "label_names": list(self.label_names), "meta": self.meta,
                "tracks": [t.to_dict() for t in self.tracks]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tracks:
        v = d["video"]
        return cls(VideoInfo(int(v["width"]), int(v["height"]), float(v["fps"]), int(v["frame_count"])),
                   tuple(d["label_names"]), [Track.from_dict(t) for t in d["tracks"]], dict(d.get("meta") or {}))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of xyxy boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def thin_keyframes(frames: Sequence[int], boxes: np.ndarray, tolerance: float) -> list[int]:
    """Indices of the keyframes to keep so that linear interpolation between them reproduces every box within
    ``tolerance`` (same unit as ``boxes``, max abs coordinate error); the first and last are always kept.

    Greedy: from each kept keyframe, extend as far as the interpolation stays within tolerance.
    """
    n = len(frames)
    if n <= 2:
        return list(range(n))
    frames_arr = np.asarray(frames, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    keep = [0]
    anchor = 0
    while anchor < n - 1:
        end = anchor + 1
        while end + 1 < n and _fits(frames_arr, boxes, anchor, end + 1, tolerance):
            end += 1
        keep.append(end)
        anchor = end
    return keep


def _fits(frames: np.ndarray, boxes: np.ndarray, i: int, j: int, tolerance: float) -> bool:
    t = (frames[i + 1:j] - frames[i]) / (frames[j] - frames[i])
    line = boxes[i] + t[:, None] * (boxes[j] - boxes[i])
    return bool(np.abs(line - boxes[i + 1:j]).max(initial=0.0) <= tolerance)
