"""Videos: pre-label (keyframe detection + tracks with stable ids) and propagate (boxes drawn on one frame).

Pre-labeling runs the image :class:`~prelabel.pipeline.Labeler` on every ``every``-th frame (and the last), links
its detections to the open tracks by IoU with an optimal assignment (Hungarian, scipy), starts a track for each
unmatched detection and ends a track after ``max_missed`` keyframes without a match. Between keyframes the boxes
come from the Labeler's tracker when it has one (SAM 2 video, seeded on each keyframe), otherwise from linear
interpolation between the matched keyframe boxes (and non-keyframes are then not even decoded).

Memory is bounded: frames are streamed, the tracker holds a window, and only boxes (16 bytes per frame and
track) are kept. The whole state between two keyframes is :meth:`TrackLinker.to_dict`, which is what a batch
checkpoint stores to resume a video at frame granularity.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from prelabel.core.errors import PrelabelError, Unavailable
from prelabel.core.labels import LabelPrompt
from prelabel.core.regions import Regions
from prelabel.core.scoring import Scoring
from prelabel.core.uncertainty import region_confidence
from prelabel.core.video import Track, Tracks, VideoSource, box_iou
from prelabel.pipeline.labeler import Labeler
from prelabel.settings import Settings


@dataclass(frozen=True)
class VideoConfig:
    """How keyframes are chosen and linked; all of it shapes predictions, so it is part of ``model_version``."""

    every: int = Settings.video_every  # every default is the Settings' own
    max_missed: int = Settings.video_max_missed
    match_iou: float = Settings.video_match_iou

    @classmethod
    def from_settings(cls, settings: Any) -> VideoConfig:
        return cls(int(settings.video_every), int(settings.video_max_missed), float(settings.video_match_iou))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrackLinker:
    """Open and finished tracks, linked keyframe by keyframe; serialisable between keyframes."""

    def __init__(self, config: VideoConfig) -> None:
        self.config = config
        self.open: list[Track] = []
        self.missed: dict[int, int] = {}
        self.finished: list[Track] = []
        self.next_id = 1
        self.pending: dict[int, list[float]] = {}  # track id -> the tracker's box on the coming keyframe
        self.next_frame = 0  # the next keyframe to process

    def predicted(self, track: Track, frame: int) -> np.ndarray:
        """Where the track should be on ``frame``: the tracker's box, else constant velocity from its last two
        detections (a keyframe apart, objects move more than their size allows for plain IoU)."""
        box = self.pending.get(track.track_id)
        if box is not None:
            return np.asarray(box, dtype=np.float32)
        seen = [i for i, d in enumerate(track.detected) if d][-2:]
        last = np.asarray(track.boxes[-1], dtype=np.float64)
        if len(seen) < 2:
            return last.astype(np.float32)
        (i, j) = seen
        velocity = (np.asarray(track.boxes[j]) - np.asarray(track.boxes[i])) / (track.frames[j] - track.frames[i])
        return (last + velocity * (frame - track.frames[-1])).astype(np.float32)

    def update(self, frame: int, detections: Regions, interpolate: bool) -> None:
        """Link one keyframe's detections: continue, start and end tracks."""
        confidence = region_confidence(detections) if len(detections) else np.zeros(0)
        matches: list[tuple[int, int]] = []
        if self.open and len(detections):
            predicted = np.stack([self.predicted(t, frame) for t in self.open])
            iou = box_iou(predicted, detections.boxes_xyxy)
            # Gate: enough overlap, or (a fallback for fast objects) centres closer than the track box's diagonal.
            centre_t = (predicted[:, :2] + predicted[:, 2:]) / 2
            centre_d = (detections.boxes_xyxy[:, :2] + detections.boxes_xyxy[:, 2:]) / 2
            diagonal = np.maximum(np.linalg.norm(predicted[:, 2:] - predicted[:, :2], axis=1), 1.0)
            distance = np.linalg.norm(centre_t[:, None] - centre_d[None], axis=2) / diagonal[:, None]
            same_label = np.array([[t.label_id == d for d in detections.label_ids] for t in self.open])
            feasible = same_label & ((iou >= self.config.match_iou) | (distance < 1.0))
            cost = np.where(iou >= self.config.match_iou, 1.0 - iou, 1.0 + distance)
            rows, cols = linear_sum_assignment(np.where(feasible, cost, 10.0))
            matches = [(r, c) for r, c in zip(rows, cols) if feasible[r, c]]
        matched_tracks = {r for r, _ in matches}
        matched_dets = {c for _, c in matches}
        for r, c in matches:
            track = self.open[r]
            box = detections.boxes_xyxy[c]
            if interpolate:
                _interpolate(track, frame, box)
            track.add(frame, box, float(confidence[c]), True)
            self.missed[track.track_id] = 0
        still_open = []
        for r, track in enumerate(self.open):
            if r not in matched_tracks:
                self.missed[track.track_id] = self.missed.get(track.track_id, 0) + 1
                pending = self.pending.get(track.track_id)
                if pending is not None and self.missed[track.track_id] <= self.config.max_missed:
                    track.add(frame, pending, 0.5, False)  # the tracker still sees it here
                if self.missed[track.track_id] > self.config.max_missed:
                    _drop_tail(track)
                    self.finished.append(track)
                    self.missed.pop(track.track_id, None)
                    continue
            still_open.append(track)
        self.open = still_open
        for c in range(len(detections)):
            if c not in matched_dets:
                track = Track(self.next_id, int(detections.label_ids[c]))
                track.add(frame, detections.boxes_xyxy[c], float(confidence[c]), True)
                self.open.append(track)
                self.missed[track.track_id] = 0
                self.next_id += 1
        self.pending = {}

    def finish(self) -> list[Track]:
        for track in self.open:
            _drop_tail(track)
        tracks = sorted([*self.finished, *self.open], key=lambda t: t.track_id)
        self.finished, self.open = tracks, []
        return [t for t in tracks if len(t)]

    def to_dict(self) -> dict[str, Any]:
        return {"open": [t.to_dict() for t in self.open], "finished": [t.to_dict() for t in self.finished],
                "missed": {str(k): v for k, v in self.missed.items()}, "next_id": self.next_id,
                "pending": {str(k): v for k, v in self.pending.items()}, "next_frame": self.next_frame}

    @classmethod
    def from_dict(cls, config: VideoConfig, state: Mapping[str, Any]) -> TrackLinker:
        linker = cls(config)
        linker.open = [Track.from_dict(t) for t in state["open"]]
        linker.finished = [Track.from_dict(t) for t in state["finished"]]
        linker.missed = {int(k): int(v) for k, v in state["missed"].items()}
        linker.next_id = int(state["next_id"])
        linker.pending = {int(k): list(v) for k, v in state["pending"].items()}
        linker.next_frame = int(state["next_frame"])
        return linker


def _interpolate(track: Track, frame: int, box: np.ndarray) -> None:
    """Fill the frames between the track's last box and ``box`` at ``frame`` linearly."""
    last_frame, last_box = track.frames[-1], np.asarray(track.boxes[-1], dtype=np.float64)
    for f in range(last_frame + 1, frame):
        t = (f - last_frame) / (frame - last_frame)
        track.add(f, last_box + t * (np.asarray(box, dtype=np.float64) - last_box), track.scores[-1], False)


def _drop_tail(track: Track) -> None:
    """A track ends at its last detection or its last confident tracked frame; trailing guesses are dropped."""
    while len(track.frames) > 1 and not track.detected[-1] and track.scores[-1] < 0.5:
        for column in (track.frames, track.boxes, track.scores, track.detected):
            column.pop()


def keyframes(frame_count: int, every: int, start: int = 0) -> list[int]:
    """Every ``every``-th frame from ``start`` and the last frame."""
    frames = list(range(start, frame_count, every))
    if frames and frames[-1] != frame_count - 1:
        frames.append(frame_count - 1)
    return frames


class VideoLabeler:
    """Pre-labels and propagates through videos with one :class:`Labeler` (its detector and tracker)."""

    def __init__(self, labeler: Labeler, config: VideoConfig | None = None) -> None:
        self.labeler = labeler
        self.config = config or VideoConfig()

    @property
    def tracker_name(self) -> str:
        return self.labeler.tracker.model_id if self.labeler.tracker is not None else "linear-interpolation"

    def video_params(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "between_keyframes": self.tracker_name}

    def model_version(self, labels: Sequence[LabelPrompt], calibration: Scoring | None = None) -> str:
        return self.labeler.model_version(labels, calibration, video=self.video_params())

    def prelabel(
        self,
        source: VideoSource,
        labels: Sequence[LabelPrompt],
        calibration: Scoring | None = None,
        resume: Mapping[str, Any] | None = None,
        on_keyframe: Callable[[TrackLinker], None] | None = None,
        deadline: float | None = None,
    ) -> Tracks:
        """Tracks of every object ``labels`` name. ``resume`` is a :meth:`TrackLinker.to_dict` saved by
        ``on_keyframe`` (called after each keyframe): the run continues from there. Past ``deadline`` (a
        ``time.monotonic()`` value) it raises :class:`VideoDeadline` with the state reached."""
        started = time.perf_counter()
        info = source.info
        linker = TrackLinker.from_dict(self.config, resume) if resume else TrackLinker(self.config)
        names = tuple(label.name for label in labels)
        tracker = self.labeler.tracker
        keys = [k for k in keyframes(info.frame_count, self.config.every) if k >= linker.next_frame]
        detections = 0
        if tracker is None:
            for index, frame in source.select(keys):  # only keyframes are decoded
                self._keyframe(linker, index, frame, labels, calibration, interpolate=True)
                detections += 1
                linker.next_frame = index + 1
                if on_keyframe:
                    on_keyframe(linker)
                _check(deadline, linker)
        else:
            frames = source.frames(linker.next_frame, info.frame_count)
            current = next(frames, None)
            for number, key in enumerate(keys):
                if current is None or current[0] != key:
                    break
                frame = current[1]
                self._keyframe(linker, key, frame, labels, calibration, interpolate=False)
                detections += 1
                end = keys[number + 1] if number + 1 < len(keys) else None
                current = self._track_segment(linker, key, frame, end, frames) if end is not None else None
                linker.next_frame = key + 1 if end is None else end
                if on_keyframe:
                    on_keyframe(linker)
                _check(deadline, linker)
        tracks = linker.finish()
        seconds = time.perf_counter() - started
        return Tracks(info, names, tracks, meta={
            "model_version": self.model_version(labels, calibration), "random_weights": self.labeler.random_weights,
            "between_keyframes": self.tracker_name,
            "keyframes": len(keyframes(info.frame_count, self.config.every)), "keyframes_this_run": detections,
            "seconds": round(seconds, 3)})

    def _keyframe(self, linker: TrackLinker, index: int, frame: np.ndarray, labels: Sequence[LabelPrompt],
                  calibration: Scoring | None, interpolate: bool) -> None:
        regions = self.labeler.predict(frame, labels, with_masks=False, calibration=calibration)
        linker.update(index, regions, interpolate)

    def _track_segment(self, linker: TrackLinker, key: int, frame: np.ndarray, end: int,
                       frames: Iterator[tuple[int, np.ndarray]]) -> tuple[int, np.ndarray] | None:
        """Track the open tracks from keyframe ``key`` to keyframe ``end``; returns ``end``'s frame."""
        holder: dict[str, tuple[int, np.ndarray] | None] = {"end": None}

        def segment() -> Iterator[np.ndarray]:
            yield frame
            for index, image in frames:
                if index == end:
                    holder["end"] = (index, image)
                yield image
                if index >= end:
                    return

        alive = [t for t in linker.open if t.frames[-1] == key]
        if not alive:
            for item in segment():
                del item
            return holder["end"]
        seeds = np.stack([np.asarray(t.boxes[-1], dtype=np.float32) for t in alive])
        lost = np.zeros(len(alive), dtype=bool)
        for index, (boxes, scores) in zip(range(key + 1, end + 1), self.labeler.tracker.track(segment(), seeds)):
            for i, track in enumerate(alive):
                lost[i] |= scores[i] < 0.5
                if lost[i]:
                    continue
                if index == end:
                    linker.pending[track.track_id] = [float(v) for v in boxes[i]]
                else:
                    track.add(index, boxes[i], float(scores[i]), False)
        return holder["end"]

    def propagate(
        self,
        source: VideoSource,
        frame: int,
        boxes_xyxy: np.ndarray,
        label_ids: Sequence[int],
        label_names: Sequence[str],
        frames: int = 30,
        direction: str = "forward",
        scores: Sequence[float] | None = None,
    ) -> Tracks:
        """Tracks of the given boxes on ``frame``, ``frames`` frames forward, backward or both."""
        tracker = self.labeler.tracker
        if tracker is None:
            raise PrelabelError("propagating boxes needs a tracker; set PRELABEL_VIDEO_TRACKER (e.g. "
                                "facebook/sam2.1-hiera-tiny, or random-tiny-sam2-video offline)")
        if direction not in ("forward", "backward", "both"):
            raise PrelabelError(f"direction must be forward, backward or both, got {direction!r}")
        info = source.info
        if not 0 <= frame < info.frame_count:
            raise PrelabelError(f"frame {frame} is outside the video (0..{info.frame_count - 1})")
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        scores = list(scores) if scores is not None else [1.0] * len(boxes)
        forward: list[list[tuple[int, np.ndarray, float]]] = [[] for _ in boxes]
        backward: list[list[tuple[int, np.ndarray, float]]] = [[] for _ in boxes]
        if direction in ("forward", "both"):
            stop = min(info.frame_count, frame + frames + 1)
            _run(tracker, (f for _, f in source.frames(frame, stop)), boxes, range(frame + 1, stop), forward)
        if direction in ("backward", "both") and frame > 0:
            low = max(0, frame - frames)
            _run(tracker, (f for _, f in source.frames_backward(frame, low)), boxes, range(frame - 1, low - 1, -1),
                 backward)
        tracks = []
        for i, box in enumerate(boxes):
            track = Track(i + 1, int(label_ids[i]))
            for index, b, s in sorted(backward[i], key=lambda row: row[0]):
                track.add(index, b, s, False)
            track.add(frame, box, float(scores[i]), True)
            for index, b, s in forward[i]:
                track.add(index, b, s, False)
            tracks.append(track)
        return Tracks(info, tuple(label_names), tracks, meta={"between_keyframes": self.tracker_name,
                                                               "random_weights": self.labeler.random_weights})


def _run(tracker: Any, frames: Iterator[np.ndarray], boxes: np.ndarray, indices: range,
         out: list[list[tuple[int, np.ndarray, float]]]) -> None:
    lost = np.zeros(len(boxes), dtype=bool)
    for index, (tracked, scores) in zip(indices, tracker.track(frames, boxes)):
        lost |= scores < 0.5
        if lost.all():
            break
        for i in np.flatnonzero(~lost):
            out[i].append((index, tracked[i].copy(), float(scores[i])))


class VideoDeadline(Unavailable):
    """Raised past a deadline with the state reached, so the caller can finish the video in the background
    (uncaught, it is a 503: the answer is not ready within the deadline)."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__("video deadline reached: the rest is finished in the background")
        self.state = state


def _check(deadline: float | None, linker: TrackLinker) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise VideoDeadline(linker.to_dict())
