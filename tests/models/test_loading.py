"""Model loading: local folders, official SAM checkpoints, and clear errors."""

import re

import numpy as np
import pytest
import torch

from prelabel.models.random_weights import build_grounding_dino, build_sam, sam_config
from prelabel.models.registry import ModelLoadError, load_detector, load_segmenter
from prelabel.models.sam_checkpoint import rename_official_keys

IMAGE = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def test_detector_saved_with_save_pretrained_loads_by_path(tmp_path):
    model, processor = build_grounding_dino("random-tiny")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = load_detector(str(tmp_path), device="cpu")
    assert loaded.random_weights is False and loaded.model_id == str(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name


def test_segmenter_saved_with_save_pretrained_loads_by_path(tmp_path):
    model, processor = build_sam("random-tiny")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = load_segmenter(str(tmp_path), device="cpu")
    reference = load_segmenter("random-tiny", device="cpu")
    box = np.array([[5, 5, 40, 30]], dtype=np.float32)
    assert np.array_equal(loaded.segment_boxes(IMAGE, box)[0], reference.segment_boxes(IMAGE, box)[0])


# Official segment-anything names for the transformers names that differ (inverse of the loader's renames).
_TO_OFFICIAL = [
    (r"^vision_encoder\.layers\.", "image_encoder.blocks."),
    (r"^vision_encoder\.", "image_encoder."),
    (r"\.layer_norm(\d?)\.", r".norm\1."),
    (r"patch_embed\.projection", "patch_embed.proj"),
    (r"neck\.conv1", "neck.0"), (r"neck\.norm1", "neck.1"), (r"neck\.conv2", "neck.2"), (r"neck\.norm2", "neck.3"),
    (r"point_embed\.", "point_embeddings."),
    (r"shared_embedding\.positional_embedding", "pe_layer.positional_encoding_gaussian_matrix"),
    (r"mask_embed\.conv1", "mask_downscaling.0"), (r"mask_embed\.norm1", "mask_downscaling.1"),
    (r"mask_embed\.conv2", "mask_downscaling.3"), (r"mask_embed\.norm2", "mask_downscaling.4"),
    (r"mask_embed\.conv3", "mask_downscaling.6"),
    (r"upscale_conv1", "output_upscaling.0"), (r"upscale_norm", "output_upscaling.1"),
    (r"upscale_conv2", "output_upscaling.3"),
    (r"(mlps\.\d+|iou_prediction_head)\.layers\.0\.", r"\1.layers.1."), (r"\.proj_in\.", ".layers.0."),
    (r"\.proj_out\.", ".layers.2."),
]


def to_official(state):
    out = {}
    for key, value in state.items():
        if key.startswith("shared_image_embedding"):
            continue
        for pattern, repl in _TO_OFFICIAL:
            key = re.sub(pattern, repl, key)
        out[key] = value
    out["pixel_mean"], out["pixel_std"] = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    return out


def test_official_sam_checkpoint_loads_with_weights_only(tmp_path):
    from transformers import SamModel

    config = sam_config("random-tiny")
    config.mask_decoder_config.num_attention_heads = 8  # the official decoder has 8 heads
    torch.manual_seed(3)
    original = SamModel(config).eval()
    official = to_official(original.state_dict())
    # names as the official segment-anything code writes them
    for key in [
        "image_encoder.patch_embed.proj.weight", "image_encoder.blocks.0.attn.rel_pos_h", "image_encoder.neck.0.weight",
        "image_encoder.neck.3.weight", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "prompt_encoder.point_embeddings.0.weight", "prompt_encoder.mask_downscaling.6.weight",
        "mask_decoder.output_upscaling.0.weight", "mask_decoder.output_hypernetworks_mlps.0.layers.2.weight",
        "mask_decoder.iou_prediction_head.layers.1.weight", "mask_decoder.transformer.layers.0.norm1.weight",
        "image_encoder.blocks.0.norm1.weight",
    ]:
        assert key in official, key
    assert rename_official_keys(dict(official)).keys() >= original.state_dict().keys()
    path = tmp_path / "sam_vit_tiny_test.pth"
    torch.save(official, path)
    loaded = load_segmenter(str(path), device="cpu")
    assert loaded.model.config.vision_config.global_attn_indexes == [1]
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "sam_vit_b_broken.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot read checkpoint"):
        load_segmenter(str(path), device="cpu")
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ModelLoadError, match="not a segment-anything checkpoint"):
        load_segmenter(str(tmp_path / "other.pth"), device="cpu")


def test_unreachable_model_says_how_to_pass_a_local_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="local folder") as info:
        load_detector("IDEA-Research/grounding-dino-tiny-does-not-exist", device="cpu")
    assert "random-tiny" in str(info.value)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_segmenter(str(tmp_path / "missing-dir"), device="cpu")
