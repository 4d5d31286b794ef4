"""Real Grounding DINO and SAM architectures with random weights, for offline tests and benchmarks.

``random-tiny`` builds small configs of the same classes (seconds, for tests); ``random-full`` builds the
default configs, equal to grounding-dino-tiny (Swin-T) and sam-vit-base, for honest timings. Their outputs
mean nothing: every result produced with them says ``random_weights: true``.
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
    SamConfig,
    SamImageProcessorPil,
    SamModel,
    SamProcessor,
)

RANDOM_SPECS = ("random-tiny", "random-full")
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


def build_grounding_dino(spec: str) -> tuple[GroundingDinoForObjectDetection, GroundingDinoProcessor]:
    """Grounding DINO with random weights and a matching processor."""
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
    config = sam_config(spec)
    torch.manual_seed(_SEED)
    model = SamModel(config).eval()
    if spec == "random-full":
        image_processor = SamImageProcessorPil()
    else:
        side = config.vision_config.image_size
        image_processor = SamImageProcessorPil(
            size={"longest_edge": side},
            pad_size={"height": side, "width": side},
            mask_size={"longest_edge": side // 4},
            mask_pad_size={"height": side // 4, "width": side // 4},
        )
    return model, SamProcessor(image_processor)
