"""Segmenter families and encoder runtimes behind the same interface (random-tiny, so seconds)."""

import numpy as np
import pytest

from prelabel.bench.timing import mask_iou
from prelabel.core.masks import Masks
from prelabel.models.random_weights import sam2_config, sam_config
from prelabel.models.registry import ModelLoadError, load_detector, load_segmenter
from prelabel.models.sam2 import Sam2Segmenter
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings

BOXES = np.array([[5, 5, 60, 50], [40, 20, 135, 85], [0, 0, 140, 90]], dtype=np.float32)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).integers(0, 255, (90, 140, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference():
    return load_segmenter("random-tiny", "cpu", "fp32", 64)


@pytest.mark.parametrize("runtime", ["onnx", "int8"])
def test_encoder_runtime_agrees_with_fp32_pytorch_on_the_same_weights(runtime, image, reference):
    other = load_segmenter("random-tiny", "cpu", "fp32", 64, runtime)
    assert other.model_id == f"random-tiny+{runtime}"
    ref_masks, ref_scores = reference.segment_boxes(image, BOXES)
    masks, scores = other.segment_boxes(image, BOXES)
    assert masks.shape == ref_masks.shape == (3, 90, 140)
    assert min(mask_iou(a, b) for a, b in zip(ref_masks, masks)) >= 0.98
    np.testing.assert_allclose(scores, ref_scores, atol=0.02)
    click, _ = other.segment_points(image, np.array([[70.0, 45.0]]), np.array([1]))
    ref_click, _ = reference.segment_points(image, np.array([[70.0, 45.0]]), np.array([1]))
    assert mask_iou(click, ref_click) >= 0.98
    assert other.encoder_calls == 1, "the runtime's embedding is cached like PyTorch's"


def test_runtime_options_are_checked():
    with pytest.raises(ModelLoadError, match="fp32 models on the CPU"):
        load_segmenter("random-tiny", "cpu", "bf16", 64, "onnx")
    with pytest.raises(ModelLoadError, match="unknown SAM runtime"):
        load_segmenter("random-tiny", "cpu", "fp32", 64, "tensorrt")
    with pytest.raises(ModelLoadError, match="is a segmenter"):
        load_detector("random-full-sam2-tiny", "cpu")


def test_sam2_segmenter_boxes_points_and_cache(image):
    seg = load_segmenter("random-tiny-sam2", "cpu", "fp32", 64)
    assert isinstance(seg, Sam2Segmenter) and seg.random_weights
    masks, scores = seg.segment_boxes(image, BOXES)
    assert masks.shape == (3, 90, 140) and isinstance(masks, Masks) and scores.shape == (3,)
    assert not np.array_equal(masks[0], masks[1]), "the box prompt shapes the mask"
    mask, score = seg.segment_points(image, np.array([[10.0, 80.0]]), np.array([1]))
    assert mask.shape == (90, 140) and 0 <= score <= 1
    assert seg.encoder_calls == 1
    embedding = seg.embed(image)
    assert len(embedding.embeddings) == 3, "SAM 2 keeps its high-resolution features with the embedding"
    assert embedding.nbytes == sum(t.numel() * 4 for t in embedding.embeddings)
    # SAM 2 stretches the image to its square input: the far corner maps to (side, side) on both axes.
    np.testing.assert_allclose(seg._to_model_coords(np.array([[140.0, 90.0]], np.float32), embedding), [[128, 128]])


def test_sam2_onnx_encoder_agrees(image):
    seg = load_segmenter("random-tiny-sam2", "cpu", "fp32", 64)
    onnx = load_segmenter("random-tiny-sam2", "cpu", "fp32", 64, "onnx")
    ious = [mask_iou(a, b) for a, b in zip(seg.segment_boxes(image, BOXES)[0], onnx.segment_boxes(image, BOXES)[0])]
    assert min(ious) >= 0.98


def test_family_configs_match_the_released_shapes():
    assert sam_config("random-full").vision_config.hidden_size == 768  # sam-vit-base
    huge = sam_config("random-full-vit-h").vision_config
    assert (huge.hidden_size, huge.num_hidden_layers, huge.global_attn_indexes) == (1280, 32, [7, 15, 23, 31])
    for spec, hidden, mlp in [("random-full-slimsam-50", 384, 1536), ("random-full-slimsam-77", 168, 696)]:
        vision = sam_config(spec).vision_config  # as in the SlimSAM uniform checkpoints' config.json
        assert (vision.hidden_size, vision.mlp_dim, vision.num_hidden_layers) == (hidden, mlp, 12)
        assert vision.initializer_range == 0.02, "no denormal weights"
    assert sam2_config("random-full-sam2-tiny").vision_config.backbone_config.blocks_per_stage == [1, 2, 7, 2]
    assert sam2_config("random-full-sam2-small").vision_config.backbone_config.blocks_per_stage == [1, 2, 11, 2]


def test_sam_runtime_setting_reaches_the_labeler():
    settings = Settings.load(env={"PRELABEL_SAM_RUNTIME": "onnx"})
    assert settings.sam_runtime == "onnx"
    labeler = build_labeler(settings, detector="random-tiny", segmenter="random-tiny", device="cpu")
    assert labeler.segmenter.model_id == "random-tiny+onnx"
