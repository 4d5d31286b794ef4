"""Real Grounding DINO and SAM architectures with random weights, for offline tests and benchmarks.

``random-tiny`` builds small configs of the same classes (seconds, for tests); ``random-full`` builds the
default configs, equal to grounding-dino-tiny (Swin-T) and sam-vit-base, for honest timings. Segmenters also
have ``random-full-vit-h`` (sam-vit-huge), ``random-full-slimsam-50`` / ``-77`` (the shapes of the SlimSAM
uniform checkpoints, which load into ``SamModel``), ``random-full-sam2-tiny`` / ``-small`` (SAM 2.1 Hiera)
and ``random-tiny-sam2``; trackers ``random-tiny-sam2-video`` and ``random-full-sam2-tiny-video``
(SAM 2.1 video, with its memory bank). Their outputs mean nothing: every result produced with them says
``random_weights: true``.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import torch
from transformers import (
    BertTokenizerFast,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessorPil,
    GroundingDinoProcessor,
    Sam2Config,
    Sam2Model,
    Sam2VideoConfig,
    Sam2VideoModel,
    SamConfig,
    SamImageProcessorPil,
    SamModel,
    SamProcessor,
)

from prelabel.models.specs import random_specs

# Vision encoder shapes of SamModel variants: ViT-H as released, SlimSAM as its uniform checkpoints' config.json.
_SAM_VISION = {
    "random-full-vit-h": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16,
                          "mlp_dim": 5120, "global_attn_indexes": [7, 15, 23, 31]},
    "random-full-slimsam-50": {"hidden_size": 384, "mlp_dim": 1536},
    "random-full-slimsam-77": {"hidden_size": 168, "mlp_dim": 696},
}
# Hiera backbones of SAM 2.1 (the official sam2.1_hiera_t / _s configs).
_SAM2_HIERA = {
    "random-full-sam2-tiny": {"model_type": "sam2_hiera_det_model", "blocks_per_stage": [1, 2, 7, 2],
                              "global_attention_blocks": [5, 7, 9]},
    "random-full-sam2-small": {"model_type": "sam2_hiera_det_model", "blocks_per_stage": [1, 2, 11, 2],
                               "global_attention_blocks": [7, 10, 13]},
}
SAM2_SPECS = (*_SAM2_HIERA, "random-tiny-sam2")
_SEED = 0


def char_tokenizer(model_max_length: int) -> BertTokenizerFast:
    """A BERT WordPiece tokenizer whose vocabulary spells any lowercase text letter by letter.

    The hub tokenizer of Grounding DINO (``bert-base-uncased``) cannot be downloaded offline; this one
    tokenizes every prompt deterministically, so label-to-token-span mapping is exercised for real.
    """
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = specials + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vocab.txt"
        path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        # transformers 5 ignores ``vocab_file=``; the path must be passed positionally.
        return BertTokenizerFast(str(path), do_lower_case=True, model_max_length=model_max_length)


def grounding_dino_config(spec: str) -> GroundingDinoConfig:
    """The config of ``random-tiny`` (1.4 M parameters) or ``random-full`` (grounding-dino-tiny)."""
    if spec == "random-full":
        return GroundingDinoConfig()
    return GroundingDinoConfig(
        backbone_config={
            "model_type": "swin",
            "embed_dim": 32,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
            "window_size": 7,
            "out_features": ["stage2", "stage3", "stage4"],
        },
        text_config={
            "model_type": "bert",
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        },
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=20,
        max_text_len=32,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
    )


def sam_config(spec: str) -> SamConfig:
    """The config of ``random-tiny`` (0.1 M parameters) or ``random-full`` (sam-vit-base).

    ``SamVisionConfig.initializer_range`` defaults to 1e-10, which makes random weights denormal and
    every CPU timing ~10x too slow; both configs initialise like real weights instead.
    """
    if spec == "random-full":
        config = SamConfig()
    elif spec in _SAM_VISION:
        config = SamConfig(vision_config=_SAM_VISION[spec])
    else:
        config = SamConfig(
            vision_config={
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "mlp_dim": 64,
                "output_channels": 32,
                "image_size": 128,
                "patch_size": 16,
                "window_size": 4,
                "global_attn_indexes": [1],
                "num_pos_feats": 16,
            },
            prompt_encoder_config={"hidden_size": 32, "image_size": 128, "patch_size": 16, "mask_input_channels": 4},
            mask_decoder_config={
                "hidden_size": 32,
                "mlp_dim": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "iou_head_hidden_dim": 32,
            },
        )
    config.vision_config.initializer_range = 0.02
    config.initializer_range = 0.02
    return config


def sam2_config(spec: str) -> Sam2Config:
    """SAM 2.1 Hiera tiny/small (``random-full-sam2-*``) or a 128-pixel toy of the same classes."""
    if spec in _SAM2_HIERA:
        return Sam2Config(vision_config={"backbone_config": _SAM2_HIERA[spec]})
    return Sam2Config(
        vision_config={
            "backbone_config": {"model_type": "sam2_hiera_det_model",
                "hidden_size": 8, "image_size": [128, 128], "blocks_per_stage": [1, 1, 2, 1],
                "embed_dim_per_stage": [8, 16, 32, 64], "num_attention_heads_per_stage": [1, 1, 2, 2],
                "window_size_per_stage": [4, 4, 4, 2], "global_attention_blocks": [3],
            },
            "backbone_channel_list": [64, 32, 16, 8],
            "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
            "fpn_hidden_size": 32,
        },
        prompt_encoder_config={"hidden_size": 32, "image_size": 128, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
    )


def build_sam2(spec: str) -> Sam2Model:
    """SAM 2.1 with random weights (its preprocessing lives in :mod:`prelabel.models.sam2`)."""
    torch.manual_seed(_SEED)
    return Sam2Model(sam2_config(spec)).eval()


def build_grounding_dino(spec: str) -> tuple[GroundingDinoForObjectDetection, GroundingDinoProcessor]:
    """Grounding DINO with random weights and a matching processor."""
    if spec not in random_specs("detector"):
        raise ValueError(f"{spec!r} is a segmenter spec; random detectors are {', '.join(random_specs('detector'))}")
    config = grounding_dino_config(spec)
    torch.manual_seed(_SEED)
    model = GroundingDinoForObjectDetection(config).eval()
    if spec == "random-full":
        image_processor = GroundingDinoImageProcessorPil()
    else:
        image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})
    processor = GroundingDinoProcessor(image_processor, char_tokenizer(config.max_text_len))
    return model, processor


def build_sam(spec: str) -> tuple[SamModel, SamProcessor]:
    """SAM with random weights and a matching processor."""
    torch.manual_seed(_SEED)
    return SamModel(sam_config(spec)).eval(), random_sam_processor(spec)


def random_sam_processor(spec: str) -> SamProcessor:
    """The SAM preprocessor of a random spec: the released one at full size, a 128-pixel one for ``random-tiny``."""
    if spec != "random-tiny":
        return SamProcessor(SamImageProcessorPil())
    side = sam_config(spec).vision_config.image_size
    return SamProcessor(SamImageProcessorPil(
        size={"longest_edge": side},
        pad_size={"height": side, "width": side},
        mask_size={"longest_edge": side // 4},
        mask_pad_size={"height": side // 4, "width": side // 4},
    ))


def sam2_video_config(spec: str) -> Sam2VideoConfig:
    """SAM 2.1 video: Hiera-tiny as released (``random-full-sam2-tiny-video``) or a 128-pixel toy.

    The toy keeps two constraints of the transformers code: the memory attention's cross-attention reads
    64-channel memories (``kv_in_dim=64`` is fixed), and object pointers are split into ``hidden / 64`` tokens,
    so the hidden size must be a multiple of 64 above it (128 here).
    """
    if spec == "random-full-sam2-tiny-video":
        return Sam2VideoConfig(vision_config={"model_type": "sam2_vision_model",
                                              "backbone_config": _SAM2_HIERA["random-full-sam2-tiny"]})
    hidden = 128
    return Sam2VideoConfig(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": {"model_type": "sam2_hiera_det_model",
                "hidden_size": 8, "image_size": [128, 128], "blocks_per_stage": [1, 1, 2, 1],
                "embed_dim_per_stage": [8, 16, 32, 64], "num_attention_heads_per_stage": [1, 1, 2, 2],
                "window_size_per_stage": [4, 4, 4, 2], "global_attention_blocks": [3],
            },
            "backbone_channel_list": [64, 32, 16, 8],
            "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
            "fpn_hidden_size": hidden,
        },
        prompt_encoder_config={"hidden_size": hidden, "image_size": 128, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": hidden, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
        image_size=128, memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[8, 8],
        memory_encoder_hidden_size=hidden, memory_encoder_output_channels=64, mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=64,
    )


def build_sam2_video(spec: str) -> Sam2VideoModel:
    """SAM 2.1 video with random weights."""
    torch.manual_seed(_SEED)
    return Sam2VideoModel(sam2_video_config(spec)).eval()
