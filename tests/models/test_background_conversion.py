"""The OpenVINO SAM encoder is never converted in front of the first image: PyTorch encodes until a conversion
that pays off (run in a child process) is ready, then the job switches over; a corrupt or failed conversion
leaves PyTorch running with one log line."""

import copy
import logging

import numpy as np
import pytest
import torch

from prelabel.bench.timing import mask_iou
from prelabel.models import runtimes
from prelabel.models.cache import LRUBytesCache
from prelabel.models.random_weights import build_sam
from prelabel.models.registry import load_segmenter

pytest.importorskip("openvino")

IMAGES = [np.random.default_rng(seed).integers(0, 255, (90, 140, 3), dtype=np.uint8) for seed in range(4)]
BOXES = np.array([[5, 5, 60, 50], [40, 20, 135, 85]], dtype=np.float32)


def segmenter(cache_dir, **kwargs):
    """A random-tiny SAM whose encoder is OpenVINO (cache in ``cache_dir``), with a cache of its own."""
    seg = copy.copy(load_segmenter("random-tiny", "cpu", "fp32", 64, "openvino", str(cache_dir), **kwargs))
    seg.cache, seg.encoder_calls, seg.store = LRUBytesCache(10**9), 0, None
    return seg


def test_an_open_ended_job_converts_in_the_background_and_switches_with_the_same_masks(tmp_path, caplog):
    seg = segmenter(tmp_path)
    reference = load_segmenter("random-tiny", "cpu", "fp32", 64)
    assert seg.encoder.runtime == "torch" and not seg.encoder.path.exists(), "nothing converted at load"
    with caplog.at_level(logging.INFO):
        seg.expect_images(None)  # a server: converts at once, in a child process
        before, _ = seg.segment_boxes(IMAGES[0], BOXES)  # answered meanwhile
        seg.encoder.wait(300)
    assert seg.encoder.runtime == "openvino" and seg.encoder.path.is_file() and seg.encoder.convert_seconds > 0
    assert "converting in the background" in caplog.text and "it encodes from now on" in caplog.text
    after, _ = seg.segment_boxes(IMAGES[1], BOXES)
    for image, masks in ((IMAGES[0], before), (IMAGES[1], after)):
        expected, _ = reference.segment_boxes(image, BOXES)
        assert min(mask_iou(a, b) for a, b in zip(expected, masks, strict=True)) >= 0.98
    again = runtimes.OpenVinoImageEncoder(seg.model, seg.encoder.image_size, tmp_path)  # a restart: compiled at once, never rebuilt
    assert again.runtime == "openvino" and again.convert_seconds == 0.0


def test_a_small_job_starts_no_conversion(tmp_path, caplog):
    seg = segmenter(tmp_path)
    seg.expect_images(len(IMAGES))
    with caplog.at_level(logging.INFO):
        for image in IMAGES:
            seg.segment_boxes(image, BOXES)
    assert seg.encoder.runtime == "torch" and seg.encoder._thread is None and not seg.encoder.path.exists()
    assert "not converting: the 3 image(s) left" in caplog.text and "prelabel warmup" in caplog.text


def test_a_job_where_it_pays_off_switches_mid_job(tmp_path, monkeypatch):
    monkeypatch.setattr(runtimes, "PRIOR_CONVERT_SECONDS_PER_MPARAM", 0.0)  # converting costs nothing here
    seg = segmenter(tmp_path)
    seg.expect_images(1000)
    seg.segment_boxes(IMAGES[0], BOXES)  # measured in PyTorch, then the decision
    seg.encoder.wait(300)
    assert seg.encoder.runtime == "openvino"
    assert (tmp_path / "conversion-costs.json").is_file(), "the measured cost decides the next job"
    assert seg.encoder.conversion_estimate() > 0


def test_the_store_identity_follows_the_runtime_that_encoded(tmp_path):
    seg = segmenter(tmp_path / "cache")
    seg.use_store(str(tmp_path / "store"), 10**9, "openvino")
    seg.segment_boxes(IMAGES[0], BOXES)  # PyTorch encodes: a torch entry
    torch_identity = seg.store.identity
    seg.prepare_runtime()
    seg.segment_boxes(IMAGES[1], BOXES)
    assert "|torch|" in torch_identity and "|openvino|" in seg.store.identity


def test_a_corrupt_cached_model_is_rebuilt_with_one_log_line(tmp_path, caplog):
    seg = segmenter(tmp_path)
    seg.prepare_runtime()
    seg.encoder.path.write_text("<not an IR>")
    with caplog.at_level(logging.WARNING):
        fresh = runtimes.OpenVinoImageEncoder(seg.model, seg.encoder.image_size, tmp_path)
    assert fresh.runtime == "torch" and not fresh.path.exists()
    assert len([r for r in caplog.records if "corrupt" in r.message]) == 1
    fresh.prepare()
    assert fresh.runtime == "openvino" and fresh.convert_seconds > 0


def test_a_conversion_past_its_memory_limit_leaves_pytorch_running(tmp_path, caplog):
    model = build_sam("random-tiny")[0]
    side = model.config.vision_config.image_size
    encoder = runtimes.OpenVinoImageEncoder(model, side, tmp_path, convert_memory_gb=0.01)
    with caplog.at_level(logging.WARNING):
        encoder.expect(None)
        encoder.wait(300)
    assert encoder.runtime == "torch" and "PRELABEL_SAM_CONVERT_MEMORY_GB" in caplog.text
    assert not list((tmp_path / "openvino").glob("*/image_encoder.xml")), "no half-written model left"
    with torch.inference_mode():
        assert encoder(torch.zeros(1, 3, side, side)).shape[1] > 0, "PyTorch keeps encoding"


def test_closing_stops_a_background_conversion_and_leaves_nothing_behind(tmp_path):
    model = build_sam("random-tiny")[0]
    encoder = runtimes.OpenVinoImageEncoder(model, model.config.vision_config.image_size, tmp_path)
    encoder.expect(None)  # a conversion starts...
    encoder.close()  # ...and the process exits (registered at exit)
    assert not encoder._thread.is_alive() and encoder.runtime == "torch"
    assert not [p for p in (tmp_path / "openvino").glob("*") if not p.name.endswith(".lock")], "no scratch left"
