"""Peak RSS over a 10,000-frame video stays within the budget of docs/video.md (streamed frames, windowed tracker)."""

from __future__ import annotations

import resource
import time

import numpy as np

from prelabel.core.labels import LabelPrompt
from prelabel.core.video import VideoSource, write_video
from prelabel.pipeline import build_labeler
from prelabel.pipeline.video import VideoConfig, VideoLabeler
from prelabel.settings import Settings
from video_data import square_frames

BUDGET_MB = 150  # docs/video.md: peak RSS growth while pre-labeling a 10,000-frame video (small frames)
LABELS = [LabelPrompt("square", ("square",))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def test_10000_frames_peak_rss_within_budget(tmp_path):
    path = write_video(tmp_path / "long.mp4", square_frames(10_000, size=(64, 48), side=8, speed=1), fps=25)
    labeler = build_labeler(Settings(detector="random-tiny", segmenter="", video_tracker="random-tiny-sam2-video",
                                     device="cpu", box_threshold=0.3))
    source = VideoSource(path)
    assert source.info.frame_count == 10_000
    before = peak_rss_mb()
    started = time.perf_counter()
    tracks = VideoLabeler(build_labeler(Settings(detector="random-tiny", segmenter="", device="cpu",
                                                 box_threshold=0.3)), VideoConfig(every=50)).prelabel(source, LABELS)
    prelabel_s = time.perf_counter() - started
    tracker = labeler.tracker
    started = time.perf_counter()
    count = sum(1 for _ in tracker.track((f for _, f in source.frames(0, 3000)), np.array([[10, 20, 18, 28.]])))
    track_s = time.perf_counter() - started
    growth = peak_rss_mb() - before
    print(f"10,000 frames pre-labeled (every 50, interpolation) in {prelabel_s:.1f} s "
          f"({10_000 / prelabel_s:.0f} frames/s); SAM 2 random-tiny tracked {count} frames in {track_s:.1f} s "
          f"({count / track_s:.1f} frames/s); peak RSS growth {growth:.0f} MB")
    assert tracks.tracks and count == 2999
    assert tracker.peak_stored_frames <= tracker.window + 2
    assert growth < BUDGET_MB, f"peak RSS grew by {growth:.0f} MB (budget {BUDGET_MB} MB)"
