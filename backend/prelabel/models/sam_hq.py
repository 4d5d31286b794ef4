"""SAM-HQ (transformers ``SamHQModel``) behind the Segmenter protocol: SAM with a high-quality mask token.

SAM-HQ's mask decoder fuses the image embedding with the ViT's early (intermediate) embeddings, so the
cache entry of an image holds both: ``ImageEmbedding.embeddings`` is ``(image_embedding, *intermediate)``,
and a later click or box on the same pixels runs only the prompt encoder and decoder. Preprocessing is
SAM's (``SamImageProcessorPil``: resize the longest side, normalise, pad; no torchvision). The returned
mask is SAM's best multimask output plus the HQ token's mask (``hq_token_only=False``, SAM-HQ's default).

Random-weight specs: ``random-tiny-sam-hq`` (a 128-pixel toy) and ``random-full-sam-hq`` (the default
``SamHQConfig()``: ViT-B, the shapes of ``syscv-community/sam-hq-vit-base``), both initialised with std 0.02
like real weights (``SamHQVisionConfig`` defaults to 1e-10, which makes CPU timings denormal-slow).
"""

from __future__ import annotations

import torch
from transformers import SamHQConfig, SamHQModel, SamImageProcessorPil, SamProcessor

from prelabel.models.sam import ImageEmbedding, SamSegmenter

SAM_HQ_SPECS = ("random-tiny-sam-hq", "random-full-sam-hq")
_SEED = 0
_TINY_SIDE = 128


class SamHQSegmenter(SamSegmenter):
    """:class:`~prelabel.models.sam.SamSegmenter` whose cached embedding carries SAM-HQ's intermediate embeddings."""

    def __init__(self, model: SamHQModel, processor: SamProcessor, model_id: str, **kwargs) -> None:
        super().__init__(model, processor, model_id, encoder=self._encode_hq, **kwargs)

    def _encode_hq(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image_embeddings, intermediate = self.model.get_image_embeddings(pixel_values)
        return (image_embeddings, *intermediate)

    @torch.inference_mode()
    def _decode(self, embedding: ImageEmbedding, **prompts: torch.Tensor):
        prompts = {k: v.to(self.device) if k == "input_labels" else v.to(self.device, self.dtype) for k, v in prompts.items()}
        image_embeddings, *intermediate = embedding.embeddings
        out = self.model(image_embeddings=image_embeddings, intermediate_embeddings=intermediate,
                         multimask_output=self.multimask, hq_token_only=False, **prompts)
        iou = out.iou_scores[0].float()  # (N, M)
        best = iou.argmax(dim=-1)
        rows = torch.arange(len(best), device=best.device)
        low_res = out.pred_masks[0][rows, best].float()
        return self.upsample_masks(low_res.cpu(), embedding), iou[rows, best].clamp(0, 1).cpu().numpy()


def sam_hq_config(spec: str) -> SamHQConfig:
    """``SamHQConfig()`` (ViT-B) for ``random-full-sam-hq``, a 128-pixel toy otherwise; std 0.02 init."""
    if spec == "random-full-sam-hq":
        config = SamHQConfig()
    else:
        config = SamHQConfig(
            vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_dim": 64,
                           "output_channels": 32, "image_size": _TINY_SIDE, "patch_size": 16, "window_size": 4,
                           "global_attn_indexes": [1], "num_pos_feats": 16},
            prompt_encoder_config={"hidden_size": 32, "image_size": _TINY_SIDE, "patch_size": 16,
                                   "mask_input_channels": 4},
            mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                                 "iou_head_hidden_dim": 32, "vit_dim": 32},
        )
    config.vision_config.initializer_range = 0.02
    config.initializer_range = 0.02
    return config


def sam_hq_processor(spec: str) -> SamProcessor:
    """SAM's PIL preprocessing: the released 1024-pixel one, or 128 pixels for the toy."""
    if spec == "random-full-sam-hq":
        return SamProcessor(SamImageProcessorPil())
    side = _TINY_SIDE
    return SamProcessor(SamImageProcessorPil(
        size={"longest_edge": side}, pad_size={"height": side, "width": side},
        mask_size={"longest_edge": side // 4}, mask_pad_size={"height": side // 4, "width": side // 4},
    ))


def build_sam_hq(spec: str) -> tuple[SamHQModel, SamProcessor]:
    """SAM-HQ with random weights and its preprocessing."""
    torch.manual_seed(_SEED)
    return SamHQModel(sam_hq_config(spec)).eval(), sam_hq_processor(spec)
