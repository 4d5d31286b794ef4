"""Load the official segment-anything checkpoints (``sam_vit_{b,l,h}_*.pth``) into transformers' SamModel.

The state dict is read with ``torch.load(weights_only=True)``, its keys are renamed to transformers'
layout, and the architecture (ViT-B, -L, -H or a pruned variant) is read off the tensor shapes.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import SamConfig, SamModel

# Official name fragment -> transformers name fragment, applied in order.
_RENAMES = (
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"),
    ("blocks", "layers"),
)
_HYPERNET_MLP = re.compile(r"(output_hypernetworks_mlps\.\d+)\.layers\.(\d)")
_HYPERNET_NAMES = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}
OFFICIAL_DECODER_HEADS = 8  # segment-anything's build_sam uses 8 heads in the two-way transformer
from prelabel.core.errors import PrelabelError


class CheckpointError(PrelabelError):
    """A checkpoint file that cannot be read or does not hold a SAM state dict."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` with a clear error; unwraps ``{"model": ...}`` layouts."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.__class__.__name__}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def rename_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official segment-anything key names to transformers' SamModel names."""
    renamed = {}
    for key, value in state.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        for old, new in _RENAMES:
            key = key.replace(old, new)
        key = _HYPERNET_MLP.sub(lambda m: f"{m.group(1)}.{_HYPERNET_NAMES[m.group(2)]}", key)
        renamed[key] = value
    renamed["shared_image_embedding.positional_embedding"] = renamed["prompt_encoder.shared_embedding.positional_embedding"]
    return renamed


def config_from_official(state: dict[str, torch.Tensor]) -> SamConfig:
    """The SamConfig whose tensors have the shapes found in an official state dict."""
    prefix = "image_encoder."
    if prefix + "patch_embed.proj.weight" not in state:
        raise CheckpointError("not a segment-anything checkpoint: image_encoder.patch_embed.proj.weight is missing")
    patch = state[prefix + "patch_embed.proj.weight"]
    hidden, patch_size = patch.shape[0], patch.shape[-1]
    grid = state[prefix + "pos_embed"].shape[1]
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith(prefix + "blocks.")})
    rel_pos = [state[f"{prefix}blocks.{i}.attn.rel_pos_h"] for i in layers]
    head_dim = rel_pos[0].shape[1]
    global_layers = [i for i, r in zip(layers, rel_pos) if r.shape[0] == 2 * grid - 1]
    windowed = [r.shape[0] for r in rel_pos if r.shape[0] != 2 * grid - 1]
    decoder_hidden = state["mask_decoder.iou_token.weight"].shape[1]
    decoder_layers = {int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.transformer.layers.")}
    return SamConfig(
        vision_config={
            "hidden_size": hidden,
            "num_hidden_layers": len(layers),
            "num_attention_heads": hidden // head_dim,
            "mlp_dim": state[prefix + "blocks.0.mlp.lin1.weight"].shape[0],
            "output_channels": state[prefix + "neck.0.weight"].shape[0],
            "image_size": grid * patch_size,
            "patch_size": patch_size,
            "window_size": (windowed[0] + 1) // 2 if windowed else 14,
            "global_attn_indexes": global_layers,
            "num_pos_feats": state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape[1],
        },
        prompt_encoder_config={
            "hidden_size": state["prompt_encoder.no_mask_embed.weight"].shape[1],
            "image_size": grid * patch_size,
            "patch_size": patch_size,
            "mask_input_channels": state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        },
        mask_decoder_config={
            "hidden_size": decoder_hidden,
            "mlp_dim": state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            "num_hidden_layers": len(decoder_layers),
            "num_attention_heads": OFFICIAL_DECODER_HEADS,
            "iou_head_hidden_dim": state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        },
    )


def load_official_sam(path: str | Path) -> SamModel:
    """A SamModel holding the weights of an official ``sam_vit_*.pth`` checkpoint."""
    state = read_state_dict(path)
    try:
        config = config_from_official(state)
        model = SamModel(config)
        missing, unexpected = model.load_state_dict(rename_official_keys(state), strict=False)
    except (KeyError, IndexError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a complete segment-anything checkpoint: {exc}") from exc
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    return model.eval()
