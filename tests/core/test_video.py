"""Frame reading (files, frame folders, seeking, skipping), limits, tracks and keyframe thinning."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.video import Track, Tracks, VideoError, VideoInfo, VideoSource, thin_keyframes
from video_data import bright_boxes, square_at, square_frames, write_square_video


def _x(frame: np.ndarray) -> float:
    return float(bright_boxes(frame)[0, 0])


def test_video_file_info_and_frames(tmp_path):
    source = VideoSource(write_square_video(tmp_path / "v.mp4", 40, fps=20))
    assert source.info == VideoInfo(160, 96, 20.0, 40) and source.info.duration == 2.0
    frames = list(source.frames())
    assert len(frames) == 40 and frames[0][1].shape == (96, 160, 3) and frames[0][1].dtype == np.uint8
    assert [abs(_x(f) - square_at(i)[0]) <= 1 for i, f in frames] == [True] * 40


def test_seek_select_and_backward_return_the_right_frames(tmp_path):
    source = VideoSource(write_square_video(tmp_path / "v.mp4", 40))
    for index, frame in source.select([0, 9, 10, 25, 39]):
        assert abs(_x(frame) - square_at(index)[0]) <= 1, index
    assert [i for i, _ in source.select([3, 20])] == [3, 20]
    backward = list(source.frames_backward(30, 17, chunk=5))
    assert [i for i, _ in backward] == list(range(30, 16, -1))
    assert all(abs(_x(f) - square_at(i)[0]) <= 1 for i, f in backward)
    assert abs(_x(source.frame(33)) - square_at(33)[0]) <= 1


def test_frame_folder(tmp_path):
    for i, frame in enumerate(square_frames(5)):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    source = VideoSource(tmp_path, fps=10)
    assert source.info == VideoInfo(160, 96, 10.0, 5)
    assert [abs(_x(f) - square_at(i)[0]) <= 1 for i, f in source.select([1, 4])] == [True, True]


def test_bad_videos_name_the_fix(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(PrelabelError, match="not a video"):
        VideoSource(tmp_path / "junk.mp4")
    with pytest.raises(VideoError, match="does not exist"):
        VideoSource(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frame images"):
        VideoSource(tmp_path / "empty")
    path = write_square_video(tmp_path / "v.mp4", 10)
    with pytest.raises(VideoError, match="PRELABEL_MAX_VIDEO_FRAMES"):
        VideoSource(path, max_frames=5)
    with pytest.raises(VideoError, match="PRELABEL_MAX_PIXELS"):
        VideoSource(path, max_pixels=1000)


def test_tracks_per_frame_regions_and_round_trip():
    track = Track(7, 1)
    for f in range(3, 6):
        track.add(f, [f, 0, f + 10, 10], 0.8, f == 3)
    tracks = Tracks(VideoInfo(100, 50, 25.0, 10), ("a", "b"), [track])
    regions = tracks.frame(4)
    assert regions.labels == ["b"] and regions.data["track_id"].tolist() == [7.0]
    assert regions.boxes_xyxy.tolist() == [[4, 0, 14, 10]] and len(tracks.frame(8)) == 0
    assert Tracks.from_dict(tracks.to_dict()).to_dict() == tracks.to_dict()
    with pytest.raises(ValueError):
        track.add(5, [0, 0, 1, 1], 0.5, False)


def test_thinning_keeps_corners_and_reproduces_within_tolerance():
    frames = list(range(50))
    xs = [min(f, 25) * 2.0 for f in frames]  # moves, then stops at frame 25
    boxes = np.array([[x, 0, x + 10, 10] for x in xs])
    keep = thin_keyframes(frames, boxes, 0.1)
    assert keep == [0, 25, 49]
    noisy = boxes + np.random.default_rng(0).normal(0, 0.3, boxes.shape)
    keep = thin_keyframes(frames, noisy, 1.0)
    kept = np.array(keep)
    for f in frames:
        i = np.searchsorted(kept, f)
        if kept[min(i, len(kept) - 1)] == f:
            continue
        a, b = kept[i - 1], kept[i]
        line = noisy[a] + (f - a) / (b - a) * (noisy[b] - noisy[a])
        assert np.abs(line - noisy[f]).max() <= 1.0
    assert len(keep) < 25
