"""SAM-HQ behind the Segmenter protocol (random-tiny-sam-hq: the real SamHQModel classes, random weights)."""

import json

import numpy as np
import pytest
import torch

from prelabel.core.masks import Masks
from prelabel.models.registry import ModelLoadError, load_segmenter
from prelabel.models.sam_hq import SamHQSegmenter, build_sam_hq, sam_hq_config


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).integers(0, 255, (90, 140, 3), dtype=np.uint8)


def fresh():
    model, processor = build_sam_hq("random-tiny-sam-hq")
    return SamHQSegmenter(model, processor, "random-tiny-sam-hq", random_weights=True)


def test_random_spec_loads_sam_hq():
    segmenter = load_segmenter("random-tiny-sam-hq", device="cpu")
    assert isinstance(segmenter, SamHQSegmenter) and segmenter.random_weights
    assert segmenter.model.config.model_type == "sam_hq"


def test_boxes_give_one_mask_each_and_cache_the_intermediate_embeddings(image):
    segmenter = fresh()
    masks, scores = segmenter.segment_boxes(image, np.array([[10, 10, 60, 50], [0, 0, 139, 89]]))
    assert masks.shape == (2, 90, 140) and isinstance(masks, Masks) and scores.shape == (2,)
    assert np.all((scores >= 0) & (scores <= 1))
    embedding = segmenter.embed(image)
    assert isinstance(embedding.embeddings, tuple) and len(embedding.embeddings) >= 2  # image + ViT intermediates
    assert segmenter.encoder_calls == 1
    empty, none = segmenter.segment_boxes(image, np.zeros((0, 4)))
    assert empty.shape == (0, 90, 140) and none.shape == (0,)


def test_second_click_reuses_the_cached_embeddings(image):
    segmenter = fresh()
    mask, score = segmenter.segment_points(image, np.array([[30, 40]]), np.array([1]))
    assert mask.shape == (90, 140) and 0 <= score <= 1
    assert segmenter.encoder_calls == 1
    segmenter.segment_points(image, np.array([[30, 40], [100, 60]]), np.array([1, 0]))
    segmenter.segment_points(image, np.zeros((0, 2)), np.zeros(0), box_xyxy=np.array([5, 5, 80, 70]))
    assert segmenter.encoder_calls == 1, "a later click on the same pixels must not run the image encoder"


@torch.inference_mode()
def test_decoder_uses_the_intermediate_embeddings(image):
    segmenter = fresh()
    embedding = segmenter.embed(image)
    boxes = torch.tensor([[[10.0, 10.0, 60.0, 50.0]]])
    a = segmenter.model(image_embeddings=embedding.embeddings[0], intermediate_embeddings=list(embedding.embeddings[1:]),
                        input_boxes=boxes).pred_masks
    zeroed = [torch.zeros_like(t) for t in embedding.embeddings[1:]]
    b = segmenter.model(image_embeddings=embedding.embeddings[0], intermediate_embeddings=zeroed, input_boxes=boxes).pred_masks
    assert not torch.allclose(a, b)


def test_save_pretrained_folder_loads_by_model_type(tmp_path, image):
    model, processor = build_sam_hq("random-tiny-sam-hq")
    model.save_pretrained(tmp_path)
    processor.image_processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "sam_hq"
    loaded = load_segmenter(str(tmp_path), device="cpu")
    assert isinstance(loaded, SamHQSegmenter) and not loaded.random_weights
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    boxes = np.array([[10, 10, 60, 50]])
    np.testing.assert_allclose(loaded.segment_boxes(image, boxes)[1], fresh().segment_boxes(image, boxes)[1], atol=1e-6)


def test_full_config_initialises_like_real_weights():
    config = sam_hq_config("random-full-sam-hq")
    assert config.vision_config.hidden_size == 768 and config.mask_decoder_config.vit_dim == 768
    assert config.vision_config.initializer_range == 0.02


def test_other_runtimes_are_refused():
    with pytest.raises(ModelLoadError, match="torch runtime"):
        load_segmenter("random-tiny-sam-hq", device="cpu", runtime="int8")
