"""SAM 3 (concept model + tracker) with random weights, its tokenizer and preprocessing config, offline.

``random-tiny-sam3`` is a 112-pixel toy of the real classes (builds in well under a second, for tests);
``random-full-sam3`` is the default ``Sam3Config()`` / ``Sam3TrackerConfig()`` (ViT-L/14 at 1008 px, CLIP
text encoder), the shapes of ``facebook/sam3``, for honest timings. As in ``facebook/sam3`` the tracker
shares the concept model's ViT backbone (its own FPN neck, prompt encoder and mask decoder). Outputs of
random weights mean nothing: everything built here is marked ``random_weights``.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPTokenizer, Sam3Config, Sam3Model, Sam3TrackerConfig, Sam3TrackerModel

SAM3_SPECS = ("random-tiny-sam3", "random-full-sam3")
_SEED = 0
_TINY_SIDE = 112  # 8 x 8 patches of 14 px
TRACKER_FOLDER = "tracker"  # sub-folder of a local SAM 3 folder holding its Sam3TrackerModel

_TINY_VISION = {
    "fpn_hidden_size": 32,
    "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
    "backbone_config": {
        "model_type": "sam3_vit_model",  # without it the config fails with KeyError: None
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": _TINY_SIDE, "patch_size": 14, "window_size": 4, "global_attn_indexes": [1],
        "pretrain_image_size": _TINY_SIDE,
    },
}
_SMALL = {"hidden_size": 32, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def clip_char_vocab() -> dict[str, int]:
    """A CLIP BPE vocabulary that spells lowercase text letter by letter (no merges needed).

    CLIP's BPE marks the last symbol of a word with ``</w>``; both forms of every character are present,
    so any label made of lowercase letters, digits and punctuation tokenizes without unknown tokens. The
    special tokens come last, as in CLIP's vocabulary (OWLv2 treats a query starting with id 0 as padding).
    """
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def clip_char_tokenizer(model_max_length: int = 32) -> CLIPTokenizer:
    """A working CLIP tokenizer built offline (the hub's CLIP vocabulary cannot be downloaded here)."""
    return CLIPTokenizer(vocab=clip_char_vocab(), merges=[], model_max_length=model_max_length)


def sam3_config(spec: str) -> Sam3Config:
    """The concept model's config: ``facebook/sam3``'s shapes for ``random-full-sam3``, a toy otherwise."""
    if spec == "random-full-sam3":
        return Sam3Config()
    vocab = clip_char_vocab()
    return Sam3Config(
        vision_config=_TINY_VISION,
        text_config={
            "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "projection_dim": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32,
            "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        geometry_encoder_config=_SMALL,
        detr_encoder_config=_SMALL,
        detr_decoder_config={**_SMALL, "num_queries": 10},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )


def sam3_tracker_config(spec: str) -> Sam3TrackerConfig:
    """The tracker's config, with the same vision encoder shapes as the concept model."""
    if spec == "random-full-sam3":
        return Sam3TrackerConfig()
    return Sam3TrackerConfig(
        vision_config=_TINY_VISION,
        prompt_encoder_config={"hidden_size": 32, "image_size": _TINY_SIDE, "patch_size": 14, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
    )


def sam3_preprocessor_config(side: int = 1008) -> dict[str, Any]:
    """``preprocessor_config.json`` with the keys and defaults of transformers' ``Sam3ImageProcessor``.

    ``facebook/sam3``: stretch to 1008 x 1008 (bilinear, antialiased), rescale by 1/255, mean = std = 0.5.
    """
    return {
        "image_processor_type": "Sam3ImageProcessor",
        "processor_class": "Sam3Processor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": side, "width": side},
        "resample": 2,  # PILImageResampling.BILINEAR
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "mask_size": {"height": side * 2 // 7, "width": side * 2 // 7},
        "do_pad": None,
    }


def build_sam3(spec: str) -> tuple[Sam3Model, Sam3TrackerModel, CLIPTokenizer, dict[str, Any]]:
    """Concept model, tracker (sharing its ViT backbone), tokenizer and preprocessing config."""
    if spec not in SAM3_SPECS:
        raise ValueError(f"unknown SAM 3 spec {spec!r}; use one of {', '.join(SAM3_SPECS)}")
    torch.manual_seed(_SEED)
    model = Sam3Model(sam3_config(spec)).eval()
    tracker = Sam3TrackerModel(sam3_tracker_config(spec)).eval()
    tracker.vision_encoder.backbone = model.vision_encoder.backbone
    side = model.config.vision_config.backbone_config.image_size
    tokenizer = clip_char_tokenizer(model.config.text_config.max_position_embeddings)
    return model, tracker, tokenizer, sam3_preprocessor_config(side)


def save_sam3_folder(path: str | Path, spec: str = "random-tiny-sam3", with_tracker: bool = True) -> Path:
    """Write a SAM 3 folder as ``save_pretrained`` does: model, tokenizer, ``preprocessor_config.json``.

    The tracker goes to ``<path>/tracker`` (its own ``save_pretrained`` folder, backbone included); a
    folder without it pre-labels but cannot answer clicks.
    """
    path = Path(path)
    model, tracker, tokenizer, preprocessor = build_sam3(spec)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n", encoding="utf-8")
    if with_tracker:
        tracker.save_pretrained(path / TRACKER_FOLDER)
    return path
