"""OmDet-Turbo (transformers ``OmDetTurboForObjectDetection``) behind the Detector protocol, without torchvision.

Each phrase of each label is one class query (as OWLv2's), plus one task sentence ("Detect car, car door.")
for the whole request; a box's label is the label of its best phrase, so a label that is a substring of
another is a different query, never a partial match. ``OmDetTurboProcessor`` needs torchvision (its NMS and
the fast image processor), so both ends are done here: the preprocessing reads the checkpoint's
``preprocessor_config.json`` (``size``, ``resample``, ``rescale_factor``, ``image_mean``, ``image_std``; the
keys of the ``DetrImageProcessor`` the hub checkpoint names) and resizes with PIL; the post-processing is
the processor's: score = sigmoid of the class logits, top-k over (query, label), the caller's floor,
class-aware NMS (OpenCV, :func:`~prelabel.core.geometry.nms_per_label`), boxes clipped to the image.

Random-weight specs: ``random-tiny-omdet-turbo`` (a 64-pixel toy) and ``random-full-omdet-turbo`` (the
default config's shapes: Swin-T at 640 px, CLIP text encoder). The hub checkpoint's Swin is a timm
backbone; timm is not installed here, so the random specs use transformers' own Swin (same shapes), whose
per-stage layer norms replace the post-backbone norms the timm path adds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, OmDetTurboConfig, OmDetTurboForObjectDetection

from prelabel.core.errors import ModelLoadError
from prelabel.core.geometry import clip_boxes, nms_per_label
from prelabel.core.labels import LabelError, LabelPrompt, phrase_queries
from prelabel.core.regions import Regions
from prelabel.models.random_sam3 import clip_char_tokenizer, clip_char_vocab
from prelabel.models.specs import preprocessor_folder

_SEED = 0
_TINY_SIDE = 64
_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]


class OmDetPreprocessor:
    """Resize, rescale and normalise as the checkpoint's ``preprocessor_config.json`` says (no padding)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = dict(config)
        self.size = config.get("size", {"height": 640, "width": 640})
        self.do_resize = config.get("do_resize", True)
        self.resample = int(config.get("resample", Image.Resampling.BILINEAR))
        self.do_rescale = config.get("do_rescale", True)
        self.rescale_factor = float(config.get("rescale_factor", 1 / 255))
        self.do_normalize = config.get("do_normalize", True)
        self.mean = np.asarray(config.get("image_mean", _IMAGENET_MEAN), dtype=np.float32)
        self.std = np.asarray(config.get("image_std", _IMAGENET_STD), dtype=np.float32)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> OmDetPreprocessor:
        return cls(json.loads((Path(folder) / "preprocessor_config.json").read_text(encoding="utf-8")))

    def save_pretrained(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "preprocessor_config.json").write_text(json.dumps(self.config, indent=2), encoding="utf-8")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(H, W)`` the model sees: a fixed ``height``/``width``, or DETR's shortest/longest edge rule."""
        if "height" in self.size and "width" in self.size:
            return int(self.size["height"]), int(self.size["width"])
        short, long = self.size["shortest_edge"], self.size.get("longest_edge")
        scale = short / min(height, width)
        if long is not None:
            scale = min(scale, long / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """RGB ``uint8 (H, W, 3)`` to ``pixel_values (1, 3, h, w)``."""
        height, width = image.shape[:2]
        if self.do_resize:
            new_h, new_w = self.output_size(height, width)
            image = np.asarray(Image.fromarray(image).resize((new_w, new_h), resample=self.resample))
        pixels = image.astype(np.float32)
        if self.do_rescale:
            pixels = pixels * self.rescale_factor
        if self.do_normalize:
            pixels = (pixels - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]


def preprocessor_config(side: int) -> dict[str, Any]:
    """The keys of ``omlab/omdet-turbo-swin-tiny-hf``'s ``preprocessor_config.json`` (a DETR image processor)."""
    return {
        "image_processor_type": "DetrImageProcessor", "processor_class": "OmDetTurboProcessor",
        "do_resize": True, "size": {"height": side, "width": side}, "resample": int(Image.Resampling.BILINEAR),
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": _IMAGENET_MEAN, "image_std": _IMAGENET_STD, "do_pad": False, "format": "coco_detection",
    }


class OmDetTurboDetector:
    """OmDet-Turbo behind the :class:`~prelabel.models.protocols.Detector` protocol: one class query per phrase."""

    def __init__(self, model: OmDetTurboForObjectDetection, preprocessor: OmDetPreprocessor, tokenizer,
                 model_id: str, random_weights: bool = False, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, nms_threshold: float = 0.5, max_detections: int | None = None) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.preprocessor = preprocessor
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.random_weights = random_weights
        self.device = device
        self.dtype = dtype
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections or int(model.config.num_queries)
        # the processor pads every text to 77 tokens; never beyond what the text encoder's positions hold
        self.max_text_tokens = min(77, int(model.config.text_config.max_position_embeddings))

    def queries(self, labels: Sequence[LabelPrompt]) -> tuple[list[str], list[int], str]:
        """Every phrase of every label as one class, the label id of each, and the task sentence."""
        texts, owners = phrase_queries(labels)
        return texts, owners, f"Detect {', '.join(texts)}."

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_text_tokens,
                              return_tensors="pt")

    @torch.inference_mode()
    def label_scores(self, image: np.ndarray, labels: Sequence[LabelPrompt]) -> tuple[np.ndarray, np.ndarray]:
        """Pixel boxes ``(Q, 4)`` of every query and its score per label ``(Q, L)`` (best phrase of the label)."""
        height, width = image.shape[:2]
        texts, owners, task = self.queries(labels)
        for text in texts:
            n = len(self.tokenizer(text)["input_ids"])
            if n > self.max_text_tokens:
                raise LabelError(f"the prompt {text!r} needs {n} tokens; OmDet-Turbo takes {self.max_text_tokens}: "
                                 f"shorten it")
        classes, tasks = self._tokens(texts), self._tokens([task])
        out = self.model(
            pixel_values=self.preprocessor(image).to(self.device, self.dtype),
            classes_input_ids=classes["input_ids"].to(self.device),
            classes_attention_mask=classes["attention_mask"].to(self.device),
            tasks_input_ids=tasks["input_ids"].to(self.device),
            tasks_attention_mask=tasks["attention_mask"].to(self.device),
            classes_structure=torch.tensor([len(texts)], device=self.device),
        )
        probs = out.decoder_class_logits[0].float().sigmoid().cpu().numpy()[:, : len(texts)]  # (Q, phrases)
        owners_arr = np.asarray(owners)
        per_label = np.stack([probs[:, owners_arr == i].max(axis=1) for i in range(len(labels))], axis=1)
        cx, cy, w, h = out.decoder_coord_logits[0].float().cpu().numpy().T  # normalised to the resized image
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1) * np.array(
            [width, height, width, height], dtype=np.float32)
        return clip_boxes(boxes, width, height), per_label

    def detect(self, image: np.ndarray, labels: Sequence[LabelPrompt], floor: float) -> Regions:
        """The top-k (query, label) pairs scoring at least ``floor``, after OmDet-Turbo's class-aware NMS (per
        label, so a cut applied after it keeps what a cut before it would)."""
        height, width = image.shape[:2]
        boxes, scores = self.label_scores(image, labels)
        flat = scores.reshape(-1)
        top = np.argsort(-flat, kind="stable")[: self.max_detections]
        query, label = np.divmod(top, scores.shape[1])
        keep = flat[top] >= floor
        query, label, score = query[keep], label[keep], flat[top][keep]
        kept = nms_per_label(boxes[query], score, label, self.nms_threshold)
        return Regions((width, height), tuple(lb.name for lb in labels), boxes[query][kept], score[kept], label[kept])


# ------------------------------------------------------------------------------------------ configs
def omdet_turbo_config(spec: str) -> OmDetTurboConfig:
    """Swin-T at 640 px (the default config's shapes, transformers' Swin) or a 64-pixel toy."""
    if spec == "random-full-omdet-turbo":
        return OmDetTurboConfig(use_timm_backbone=False, apply_layernorm_after_vision_backbone=False)
    vocab = clip_char_vocab()
    # The decoder needs class_embed_dim != decoder_hidden_dim (else transformers has no task_project) and the
    # task encoder reads the text encoder's hidden states, so text hidden size == class_embed_dim.
    return OmDetTurboConfig(
        use_timm_backbone=False, apply_layernorm_after_vision_backbone=False, image_size=_TINY_SIDE,
        backbone_config={"model_type": "swin", "embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2],
                         "window_size": 4, "image_size": _TINY_SIDE, "out_indices": [2, 3, 4]},
        text_config={"model_type": "clip_text_model", "vocab_size": len(vocab), "hidden_size": 64,
                     "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "max_position_embeddings": 77, "projection_dim": 64, "bos_token_id": vocab["<|startoftext|>"],
                     "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"]},
        text_projection_in_dim=64, text_projection_out_dim=64, task_encoder_hidden_dim=64, class_embed_dim=64,
        num_queries=20, encoder_in_channels=[32, 64, 128], encoder_hidden_dim=32, vision_features_channels=[32, 32, 32],
        encoder_attention_heads=2, encoder_dim_feedforward=64, decoder_hidden_dim=32, decoder_num_heads=2,
        decoder_num_layers=2, decoder_dim_feedforward=64, decoder_num_points=2,
    )


def build_omdet_turbo(spec: str) -> tuple[OmDetTurboForObjectDetection, OmDetPreprocessor, object]:
    """OmDet-Turbo with random weights, its preprocessing config and an offline CLIP tokenizer."""
    config = omdet_turbo_config(spec)
    torch.manual_seed(_SEED)
    model = OmDetTurboForObjectDetection(config).eval()
    side = _TINY_SIDE if spec != "random-full-omdet-turbo" else 640
    return model, OmDetPreprocessor(preprocessor_config(side)), clip_char_tokenizer(77)


def load_omdet_turbo(spec: str, random_weights: bool, device: str, dtype: torch.dtype) -> OmDetTurboDetector:
    if random_weights:
        model, preprocessor, tokenizer = build_omdet_turbo(spec)
    else:
        try:
            model = OmDetTurboForObjectDetection.from_pretrained(spec)
        except ImportError as exc:  # the hub checkpoint's Swin is a timm backbone
            raise ModelLoadError(f"the OmDet-Turbo checkpoint {spec!r} needs a package that is not installed "
                                 f"({exc}); `pip install timm` for the released checkpoints (their Swin is a timm "
                                 f"backbone), or use a folder whose config has use_timm_backbone=false") from exc
        tokenizer = AutoTokenizer.from_pretrained(spec)
        preprocessor = OmDetPreprocessor.from_pretrained(preprocessor_folder(spec))
    return OmDetTurboDetector(model, preprocessor, tokenizer, spec, random_weights, device, dtype)
