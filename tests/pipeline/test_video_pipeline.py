"""Pre-labeling and propagation through videos: stable track ids, new objects, lost tracks, resume, SAM 2 video."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.core.video import VideoSource
from prelabel.pipeline import Labeler, build_labeler
from prelabel.pipeline.video import TrackLinker, VideoConfig, VideoLabeler, keyframes
from prelabel.settings import Settings
from video_data import BrightSquareDetectorDouble, TemplateTrackerDouble, square_at, write_square_video

LABELS = [LabelPrompt("square", ("square",))]


def video_labeler(tracker=None, **config) -> VideoLabeler:
    return VideoLabeler(Labeler(BrightSquareDetectorDouble(), None, tracker=tracker), VideoConfig(**config))


def test_keyframes_cover_the_last_frame():
    assert keyframes(25, 10) == [0, 10, 20, 24] and keyframes(21, 10) == [0, 10, 20] and keyframes(5, 10, 3) == [3, 4]


@pytest.mark.parametrize("tracker", [None, TemplateTrackerDouble()], ids=["interpolate", "tracker-double"])
def test_one_square_one_track_with_boxes_on_every_frame(tmp_path, tracker):
    source = VideoSource(write_square_video(tmp_path / "v.mp4", 45))
    tracks = video_labeler(tracker, every=10).prelabel(source, LABELS)
    assert len(tracks) == 1
    track = tracks.tracks[0]
    assert track.frames == list(range(45)) and track.track_id == 1
    assert [f for f, d in zip(track.frames, track.detected) if d] == [0, 10, 20, 30, 40, 44]
    for f, box in zip(track.frames, track.boxes):
        assert abs(box[0] - square_at(f)[0]) <= 2, f
    assert tracks.meta["between_keyframes"] == ("linear-interpolation" if tracker is None else "test-double-template")
    if tracker is not None:
        assert tracker.calls == 5


def test_new_object_gets_a_new_id_and_lost_tracks_end(tmp_path):
    source = VideoSource(write_square_video(tmp_path / "v.mp4", 50, second_from=22))
    tracks = video_labeler(every=5, max_missed=1).prelabel(source, LABELS)
    assert [t.track_id for t in tracks.tracks] == [1, 2]
    assert tracks.tracks[1].frames[0] == 25 and tracks.tracks[1].frames[-1] == 49
    linker = TrackLinker(VideoConfig(every=5, max_missed=1))
    empty = tracks.frame(0).select([])
    linker.update(0, tracks.frame(0), interpolate=True)
    linker.update(5, empty, True)
    assert len(linker.open) == 1
    linker.update(10, empty, True)
    assert not linker.open and [t.frames for t in linker.finish()] == [[0]]


def test_resume_from_a_keyframe_state_gives_the_same_tracks(tmp_path):
    source = VideoSource(write_square_video(tmp_path / "v.mp4", 60, second_from=30))
    labeler = video_labeler(every=7)
    full = labeler.prelabel(source, LABELS)
    states = []
    labeler.prelabel(source, LABELS, on_keyframe=lambda linker: states.append(json.dumps(linker.to_dict())))
    resumed = labeler.prelabel(source, LABELS, resume=json.loads(states[4]))
    assert resumed.to_dict()["tracks"] == full.to_dict()["tracks"]


def test_propagate_forward_and_backward_with_the_tracker_double(tmp_path):
    source = VideoSource(write_square_video(tmp_path / "v.mp4", 40))
    x, y = square_at(20)
    tracks = video_labeler(TemplateTrackerDouble()).propagate(source, 20, [[x, y, x + 24, y + 24]], [0], ["square"],
                                                              frames=8, direction="both")
    track = tracks.tracks[0]
    assert track.frames == list(range(12, 29)) and track.detected.count(True) == 1
    assert all(abs(b[0] - square_at(f)[0]) <= 2 for f, b in zip(track.frames, track.boxes))
    with pytest.raises(PrelabelError, match="PRELABEL_VIDEO_TRACKER"):
        video_labeler().propagate(source, 0, [[0, 0, 5, 5]], [0], ["square"])


@pytest.fixture(scope="module")
def sam2_video():
    return build_labeler(Settings(detector="random-tiny", segmenter="", video_tracker="random-tiny-sam2-video",
                                  device="cpu", box_threshold=0.3))


def test_sam2_video_tracker_random_tiny_plumbing(tmp_path, sam2_video):
    """Real SAM 2.1 video architecture (random weights): shapes, bounded memory window, model_version."""
    source = VideoSource(write_square_video(tmp_path / "v.mp4", 40))
    tracker = sam2_video.tracker
    outputs = list(tracker.track((f for _, f in source.frames()), np.array([[10, 30, 34, 54], [50, 10, 70, 30.]])))
    assert len(outputs) == 39
    for boxes, scores in outputs:
        assert boxes.shape == (2, 4) and scores.shape == (2,) and np.isfinite(boxes).all()
        assert ((scores >= 0) & (scores <= 1)).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 160).all()
    assert tracker.peak_stored_frames <= tracker.window + 2
    labeler = VideoLabeler(sam2_video, VideoConfig(every=10))
    tracks = labeler.prelabel(source, LABELS)
    assert tracks.meta["random_weights"] is True and tracks.meta["between_keyframes"] == "random-tiny-sam2-video"
    assert tracks.meta["model_version"].startswith("prelabel-random-")
    assert labeler.model_version(LABELS) != sam2_video.model_version(LABELS)
    for track in tracks.tracks:
        assert track.frames == sorted(set(track.frames)) and track.detected[0]
