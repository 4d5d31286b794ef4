"""The restructured box decoder against transformers' ``SamModel`` on the same weights, and bounded post-processing."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import SamImageProcessorPil

from prelabel.bench.sections import judged_ious
from prelabel.core.masks import Masks
from prelabel.models.random_weights import build_sam
from prelabel.models.sam import SamSegmenter, logits_to_masks
from prelabel.models.sam_decoder import FastBoxDecoder


def reference(model, embeddings, boxes):
    """transformers' own call: best of the 3 multimask outputs by predicted IoU."""
    with torch.inference_mode():
        out = model(image_embeddings=embeddings, input_boxes=boxes[None], multimask_output=True)
    iou = out.iou_scores[0]
    rows, best = torch.arange(len(boxes)), iou.argmax(-1)
    return out.pred_masks[0][rows, best], iou[rows, best]


def random_boxes(count, side, seed=0):
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(count, 2, generator=generator) * side * 0.7
    return torch.cat([corner, corner + torch.rand(count, 2, generator=generator) * side * 0.3 + 4], dim=1)


@pytest.mark.parametrize("spec, count, chunk", [("random-tiny", 9, 4), ("random-tiny", 1, 4), ("random-tiny", 5, 1),
                                                ("random-full", 6, 4)])
def test_fast_decoder_equals_transformers_on_the_same_weights(spec, count, chunk):
    torch.set_flush_denormal(True)
    model, _ = build_sam(spec)
    config = model.config.prompt_encoder_config
    embeddings = torch.randn(1, model.config.mask_decoder_config.hidden_size, config.image_embedding_size,
                             config.image_embedding_size, generator=torch.Generator().manual_seed(1))
    boxes = random_boxes(count, config.image_size)
    expected_masks, expected_iou = reference(model, embeddings, boxes)
    masks, iou = FastBoxDecoder(model, chunk=chunk)(embeddings, boxes)
    assert masks.shape == expected_masks.shape == (count, 4 * config.image_embedding_size,
                                                   4 * config.image_embedding_size)
    scale = expected_masks.abs().max().item()
    assert (masks - expected_masks).abs().max().item() <= 1e-5 * scale, "equal up to float rounding"
    assert torch.allclose(iou, expected_iou, rtol=1e-5, atol=1e-7)
    assert ((masks > 0) == (expected_masks > 0)).float().mean().item() >= 0.99999


@pytest.mark.parametrize("spec", ["random-tiny", "random-full"])
def test_bf16_upscaling_keeps_every_mask_and_the_fp32_choice_of_mask(spec):
    """The bar of the SAM precision default (``shared/perf-recipes.md`` §3): every mask's IoU vs fp32 >= 0.98 over
    the pixels whose fp32 |logit| is above its median; the IoU head (fp32) picks the same masks."""
    torch.set_flush_denormal(True)
    model, _ = build_sam(spec)
    config = model.config.prompt_encoder_config
    embeddings = torch.randn(1, model.config.mask_decoder_config.hidden_size, config.image_embedding_size,
                             config.image_embedding_size, generator=torch.Generator().manual_seed(1))
    boxes = random_boxes(12, config.image_size)
    masks, iou = FastBoxDecoder(model)(embeddings, boxes)
    fast_masks, fast_iou = FastBoxDecoder(model, upscale_dtype=torch.bfloat16)(embeddings, boxes)
    assert fast_masks.dtype == torch.float32 and torch.equal(fast_iou, iou)
    assert not torch.equal(fast_masks, masks), "the upscaling ran in bf16"
    assert judged_ious(masks, fast_masks).min() >= 0.98


def test_segmenter_boxes_take_the_fast_decoder_and_match_the_transformers_path():
    model, processor = build_sam("random-tiny")
    segmenter = SamSegmenter(model, processor, "random-tiny", random_weights=True)
    assert segmenter.box_decoder is not None
    image = np.random.default_rng(2).integers(0, 255, (90, 140, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 60, 50], [30, 20, 130, 85], [0, 0, 140, 90]], dtype=np.float32)
    masks, scores = segmenter.segment_boxes(image, boxes)
    embedding = segmenter.embed(image)
    model_boxes = segmenter.box_prompts(boxes, embedding)[None]
    expected_masks, expected_scores = segmenter._decode(embedding, input_boxes=model_boxes)
    assert masks.shape == (3, 90, 140) and isinstance(masks, Masks)
    assert (masks.dense() == expected_masks.dense()).mean() >= 0.9999 and np.allclose(scores, expected_scores, atol=1e-6)
    point_mask, _ = segmenter.segment_points(image, np.array([[40, 30]]), np.array([1]))
    assert point_mask.shape == (90, 140) and segmenter.encoder_calls == 1, "clicks use the same cached embedding"


@pytest.mark.parametrize("original, reshaped", [((1200, 1600), (768, 1024)), ((451, 300), (1024, 681)),
                                                ((37, 999), (38, 1024))])
def test_post_processing_equals_transformers_post_process_masks(original, reshaped):
    generator = torch.Generator().manual_seed(0)
    low_res = torch.nn.functional.interpolate(torch.randn(5, 1, 16, 16, generator=generator), (256, 256),
                                              mode="bilinear")[:, 0] * 0.01
    expected = SamImageProcessorPil().post_process_masks([low_res[None]], [original], [reshaped])[0][0].numpy()
    assert np.array_equal(logits_to_masks(low_res, original, (1024, 1024), reshaped).dense(), expected)


def test_masks_of_many_boxes_on_a_large_image_stay_within_their_crops_plus_a_constant():
    """80 boxes on a 2000x1500 photo: full-frame bool masks would be 240 MB; transformers' post-processing alone
    would hold 80 float masks at full size (960 MB) and at 1024² (335 MB) at once. Ours keep each mask's box crop."""
    script = textwrap.dedent("""
        import resource, numpy as np
        from prelabel.models.random_weights import build_sam
        from prelabel.models.sam import SamSegmenter
        model, processor = build_sam("random-tiny")
        segmenter = SamSegmenter(model, processor, "random-tiny", random_weights=True)
        segmenter.segment_boxes(np.zeros((64, 64, 3), np.uint8), np.array([[1, 1, 30, 30]], np.float32))
        image = np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
        segmenter.embed(image)
        corners = np.random.default_rng(1).uniform(0, 1, (80, 2, 2)) * [1990, 1490]
        boxes = np.concatenate([corners.min(1), corners.max(1) + 8], 1).astype(np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        masks, _ = segmenter.segment_boxes(image, boxes)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(sum(crop.nbytes for crop in masks.crops) // 1024, after - before)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result_kib, growth_kib = map(int, done.stdout.split())
    assert result_kib <= 2000 * 1500 * 80 // 1024
    assert growth_kib <= result_kib + 128 * 1024, f"peak grew {growth_kib / 1024:.0f} MiB for {result_kib / 1024:.0f}"
