"""Open-vocabulary detectors beyond Grounding DINO: OWLv2 and MM Grounding DINO / LLMDet.

* **MM Grounding DINO / LLMDet** (``MMGroundingDinoForObjectDetection``) is Grounding DINO's architecture
  retrained; it takes the same prompt ("phrase. phrase.") and the same ``GroundingDinoProcessor``, so
  :class:`~prelabel.models.grounding_dino.GroundingDinoDetector` runs it unchanged, token spans and all.
* **OWLv2** (``Owlv2ForObjectDetection``) scores every image patch against a set of text queries: each
  phrase of each label is one query, and a box's label is the label of its best query, so a label that is
  a substring of another ("car", "car door") is a different query, never a partial match.

Both processors have PIL backends (``Owlv2ImageProcessorPil``, ``GroundingDinoImageProcessorPil``): no
torchvision. Random-weight specs: ``random-tiny-*`` (toys of the real classes) and ``random-full-*``
(the default configs: OWLv2 ViT-B/16 at 960 px; MM Grounding DINO with Swin-T, as mm_grounding_dino_tiny).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    GroundingDinoImageProcessorPil,
    GroundingDinoProcessor,
    MMGroundingDinoConfig,
    MMGroundingDinoForObjectDetection,
    Owlv2Config,
    Owlv2ForObjectDetection,
    Owlv2ImageProcessorPil,
)

from prelabel.core.geometry import clip_boxes
from prelabel.core.labels import LabelError, LabelPrompt, phrase_queries
from prelabel.core.regions import Regions
from prelabel.models.grounding_dino import GroundingDinoDetector
from prelabel.models.random_sam3 import clip_char_tokenizer, clip_char_vocab
from prelabel.models.random_weights import char_tokenizer, grounding_dino_config

_SEED = 0
_TINY_OWL_SIDE = 64


class Owlv2Detector:
    """OWLv2 behind the :class:`~prelabel.models.protocols.Detector` protocol: one text query per phrase.

    A patch's score for a label is the best sigmoid score over that label's phrases; the patch is kept
    as its best label (the Labeler cuts it by that label's threshold). OWLv2 pads the image to a square
    (bottom and right) before resizing, so its normalised boxes scale by the longer side.
    """

    def __init__(
        self,
        model: Owlv2ForObjectDetection,
        image_processor: Owlv2ImageProcessorPil,
        tokenizer,
        model_id: str,
        random_weights: bool = False,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.random_weights = random_weights
        self.device = device
        self.dtype = dtype
        self.max_text_tokens = int(model.config.text_config.max_position_embeddings)

    def queries(self, labels: Sequence[LabelPrompt]) -> tuple[list[str], list[int]]:
        """Every phrase of every label as one query, and the label id of each query."""
        return phrase_queries(labels)

    @torch.inference_mode()
    def label_scores(self, image: np.ndarray, labels: Sequence[LabelPrompt]) -> tuple[np.ndarray, np.ndarray]:
        """Pixel boxes ``(P, 4)`` of every patch and its score per label ``(P, L)``."""
        height, width = image.shape[:2]
        texts, owners = self.queries(labels)
        for text in texts:
            n = len(self.tokenizer(text)["input_ids"])
            if n > self.max_text_tokens:
                raise LabelError(f"the prompt {text!r} needs {n} tokens; OWLv2 takes {self.max_text_tokens}: shorten it")
        tokens = self.tokenizer(texts, padding="max_length", max_length=self.max_text_tokens, return_tensors="pt")
        pixel_values = self.image_processor(images=image, return_tensors="pt")["pixel_values"]
        out = self.model(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
            pixel_values=pixel_values.to(self.device, self.dtype),
        )
        probs = out.logits[0].float().sigmoid().cpu().numpy()  # (patches, queries)
        owners_arr = np.asarray(owners)
        per_label = np.stack([probs[:, owners_arr == i].max(axis=1) for i in range(len(labels))], axis=1)
        side = max(height, width)  # boxes are relative to the padded square
        cx, cy, w, h = out.pred_boxes[0].float().cpu().numpy().T * side
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        return clip_boxes(boxes, width, height), per_label

    def detect(self, image: np.ndarray, labels: Sequence[LabelPrompt], floor: float) -> Regions:
        """Patches whose best label scores at least ``floor``, as that label."""
        height, width = image.shape[:2]
        boxes, scores = self.label_scores(image, labels)
        best = scores.argmax(axis=1)
        best_score = scores[np.arange(len(best)), best]
        keep = best_score >= floor
        return Regions((width, height), tuple(lb.name for lb in labels), boxes[keep], best_score[keep], best[keep])


# ------------------------------------------------------------------------------------------ configs
def owlv2_config(spec: str) -> Owlv2Config:
    """owlv2-base-patch16 (ViT-B/16, 960 px) for ``random-full-owlv2``, a 64-pixel toy otherwise."""
    if spec == "random-full-owlv2":
        return Owlv2Config(vision_config={"image_size": 960})  # google/owlv2-base-patch16(-ensemble)
    vocab = clip_char_vocab()
    return Owlv2Config(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": vocab["<|startoftext|>"],
                     "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": _TINY_OWL_SIDE, "patch_size": 16},
        projection_dim=32,
    )


def build_owlv2(spec: str) -> tuple[Owlv2ForObjectDetection, Owlv2ImageProcessorPil, object]:
    """OWLv2 with random weights, its PIL image processor and an offline CLIP tokenizer."""
    config = owlv2_config(spec)
    torch.manual_seed(_SEED)
    model = Owlv2ForObjectDetection(config).eval()
    side = config.vision_config.image_size
    image_processor = Owlv2ImageProcessorPil(size={"height": side, "width": side})
    return model, image_processor, clip_char_tokenizer(config.text_config.max_position_embeddings)


def mm_grounding_dino_config(spec: str) -> MMGroundingDinoConfig:
    """``MMGroundingDinoConfig()`` (Swin-T) for ``random-full-*``; the random-tiny Grounding DINO's shapes otherwise."""
    if spec == "random-full-mm-grounding-dino":
        return MMGroundingDinoConfig()
    tiny = grounding_dino_config("random-tiny").to_dict()
    keys = ("backbone_config", "text_config", "d_model", "encoder_layers", "decoder_layers", "encoder_ffn_dim",
            "decoder_ffn_dim", "encoder_attention_heads", "decoder_attention_heads", "num_queries", "max_text_len",
            "num_feature_levels", "encoder_n_points", "decoder_n_points")
    return MMGroundingDinoConfig(**{k: tiny[k] for k in keys})


def build_mm_grounding_dino(spec: str) -> tuple[MMGroundingDinoForObjectDetection, GroundingDinoProcessor]:
    """MM Grounding DINO with random weights and a Grounding DINO processor (its hub checkpoints use that one)."""
    config = mm_grounding_dino_config(spec)
    torch.manual_seed(_SEED)
    model = MMGroundingDinoForObjectDetection(config).eval()
    if spec == "random-full-mm-grounding-dino":
        image_processor = GroundingDinoImageProcessorPil()
    else:
        image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})
    return model, GroundingDinoProcessor(image_processor, char_tokenizer(config.max_text_len))


# ------------------------------------------------------------------------------------------ loaders
def load_owlv2(spec: str, random_weights: bool, device: str, dtype: torch.dtype) -> Owlv2Detector:
    if random_weights:
        model, image_processor, tokenizer = build_owlv2(spec)
    else:
        model = Owlv2ForObjectDetection.from_pretrained(spec)
        image_processor = Owlv2ImageProcessorPil.from_pretrained(spec)
        tokenizer = AutoTokenizer.from_pretrained(spec)
    return Owlv2Detector(model, image_processor, tokenizer, spec, random_weights, device, dtype)


def load_mm_grounding_dino(spec: str, random_weights: bool, device: str, dtype: torch.dtype) -> GroundingDinoDetector:
    if random_weights:
        model, processor = build_mm_grounding_dino(spec)
    else:
        model = MMGroundingDinoForObjectDetection.from_pretrained(spec)
        processor = GroundingDinoProcessor(GroundingDinoImageProcessorPil.from_pretrained(spec),
                                           AutoTokenizer.from_pretrained(spec))
    return GroundingDinoDetector(model, processor, spec, random_weights, device, dtype)
