"""SAM 3 (transformers ``Sam3Model``) as a concept segmenter: text (and exemplar boxes) to instance masks.

One model gives boxes, masks and scores for every instance of a text concept, so the pipeline runs no
second segmenter. The ViT image features are computed once per image (``get_vision_features``), cached by
image content, and reused for every label's text (one text per forward pass), for exemplar prompts
("label one, find all") and, through ``Sam3TrackerModel`` on the same backbone output, for clicks.

transformers' ``Sam3ImageProcessor`` / ``Sam3Processor`` need torchvision, which cannot be installed beside
the CPU torch wheel: preprocessing (stretch to the square input, rescale, mean/std) is read from the
checkpoint's ``preprocessor_config.json`` and done with torch; post-processing (scores, boxes, mask
upsampling) follows transformers' ``post_process_instance_segmentation``. The geometry encoder of exemplar
boxes calls ``torchvision.ops.roi_align``; without torchvision a pure-torch ``roi_align`` of the same
semantics is installed into ``transformers.models.sam3.modeling_sam3``.

Signals (there is no detector score and mask score pair, and the concept model has no IoU head):
``score`` = sigmoid(query logit) x sigmoid(presence logit) (the image-level "is the concept here" token),
as transformers post-processes it; ``mask_score`` = the stability score of the query's mask logits
(IoU of the mask at logit > +1 and logit > -1, SAM's automatic-mask filter); ``box_mask_iou`` compares the
query's predicted box with its mask's box. Per-label presence goes to ``Regions.meta["presence"]``.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Sam3Model, Sam3TrackerModel
from transformers.models.sam3 import modeling_sam3

from prelabel.core.errors import BadRequest, PrelabelError
from prelabel.core.geometry import clip_boxes
from prelabel.core.labels import LabelError, LabelPrompt
from prelabel.core.masks import Masks
from prelabel.core.regions import Regions
from prelabel.models.cache import LRUBytesCache, image_key
from prelabel.models.embedding_store import EmbeddingStore
from prelabel.models.sam import ImageEmbedding, SamSegmenter

STABILITY_OFFSET = 1.0  # SAM's stability_score_offset, in logits


# --------------------------------------------------------------------------------------------- roi_align
def roi_align(
    features: torch.Tensor,
    boxes: Sequence[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """``torchvision.ops.roi_align`` in plain torch: ``(N, C, H, W)`` features, a list of ``(K_i, 4)`` xyxy boxes.

    Same sampling as torchvision's CPU kernel: ``sampling_ratio <= 0`` takes ``ceil(roi / output)`` points
    per bin and axis, points outside ``[-1, size]`` count as 0, others are clamped and sampled bilinearly,
    and each bin is the mean of its points. SAM 3 pools only a few exemplar boxes, so a loop over boxes is fine.
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    height, width = features.shape[-2:]
    pooled = []
    for image_index, image_boxes in enumerate(boxes):
        for box in image_boxes.to(torch.float64).tolist():
            offset = 0.5 if aligned else 0.0
            x1, y1, x2, y2 = (v * spatial_scale - offset for v in box)
            roi_w, roi_h = x2 - x1, y2 - y1
            if not aligned:
                roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
            bin_w, bin_h = roi_w / out_w, roi_h / out_h
            grid_w = sampling_ratio if sampling_ratio > 0 else max(math.ceil(roi_w / out_w), 1)
            grid_h = sampling_ratio if sampling_ratio > 0 else max(math.ceil(roi_h / out_h), 1)
            ys = y1 + (torch.arange(out_h * grid_h, dtype=torch.float64) + 0.5) * (bin_h / grid_h)
            xs = x1 + (torch.arange(out_w * grid_w, dtype=torch.float64) + 0.5) * (bin_w / grid_w)
            samples = _bilinear(features[image_index], ys, xs)  # (C, out_h * grid_h, out_w * grid_w)
            channels = samples.shape[0]
            pooled.append(samples.reshape(channels, out_h, grid_h, out_w, grid_w).mean(dim=(2, 4)))
    if not pooled:
        return features.new_zeros((0, features.shape[1], out_h, out_w))
    return torch.stack(pooled).to(features.dtype)


def _bilinear(feature: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """torchvision's ``bilinear_interpolate`` on a ``(C, H, W)`` map at the grid ``ys x xs``."""
    height, width = feature.shape[-2:]

    def axis(coords: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
        valid = (coords >= -1.0) & (coords <= size)
        coords = coords.clamp(min=0.0)
        low = coords.floor().long()
        at_edge = low >= size - 1
        low = torch.where(at_edge, torch.full_like(low, size - 1), low)
        high = torch.where(at_edge, low, low + 1)
        coords = torch.where(at_edge, low.to(coords.dtype), coords)
        frac = coords - low
        return low, high, frac, valid

    y_low, y_high, ly, y_valid = axis(ys, height)
    x_low, x_high, lx, x_valid = axis(xs, width)
    f = feature.to(torch.float64)
    top = f[:, y_low][:, :, x_low] * (1 - lx) + f[:, y_low][:, :, x_high] * lx
    bottom = f[:, y_high][:, :, x_low] * (1 - lx) + f[:, y_high][:, :, x_high] * lx
    value = top * (1 - ly)[:, None] + bottom * ly[:, None]
    return value * (y_valid[:, None] & x_valid[None, :])


def ensure_roi_align() -> None:
    """Give transformers' SAM 3 geometry encoder a ``torchvision.ops.roi_align`` when torchvision is absent."""
    if not hasattr(modeling_sam3, "torchvision"):
        modeling_sam3.torchvision = SimpleNamespace(ops=SimpleNamespace(roi_align=roi_align))


# ----------------------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Sam3Preprocessor:
    """SAM 3's image preprocessing from ``preprocessor_config.json`` (``Sam3ImageProcessor``'s keys)."""

    height: int = 1008
    width: int = 1008
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Sam3Preprocessor:
        size = config.get("size") or {"height": 1008, "width": 1008}
        if "height" not in size:
            raise PrelabelError(f"SAM 3 resizes to a fixed height and width; preprocessor_config size is {size}")
        if config.get("do_resize", True) is False or config.get("resample", 2) != 2:
            raise PrelabelError("only SAM 3's bilinear resize (resample 2) is supported")
        return cls(
            height=int(size["height"]),
            width=int(size["width"]),
            rescale_factor=float(config.get("rescale_factor", 1 / 255)),
            image_mean=tuple(float(v) for v in config.get("image_mean", (0.5, 0.5, 0.5))),
            image_std=tuple(float(v) for v in config.get("image_std", (0.5, 0.5, 0.5))),
            do_rescale=bool(config.get("do_rescale", True)),
            do_normalize=bool(config.get("do_normalize", True)),
        )

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Sam3Preprocessor:
        path = Path(folder) / "preprocessor_config.json"
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """``(1, 3, height, width)`` float32 pixel values of an ``(H, W, 3)`` uint8 RGB image.

        Resizing is torch's antialiased bilinear on uint8, the kernel torchvision's ``resize`` runs.
        """
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None]
        if pixels.shape[-2:] != (self.height, self.width):
            pixels = F.interpolate(pixels, (self.height, self.width), mode="bilinear", align_corners=False,
                                   antialias=True)
        values = pixels.to(torch.float32)
        if self.do_rescale:
            values = values * self.rescale_factor
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(self.image_std, dtype=torch.float32).view(1, 3, 1, 1)
            values = (values - mean) / std
        return values


# ------------------------------------------------------------------------------------------ post-process
def stability_score(mask_logits: torch.Tensor, offset: float = STABILITY_OFFSET) -> torch.Tensor:
    """IoU of the masks at ``logit > offset`` and ``logit > -offset`` (1 when empty at both)."""
    inner = (mask_logits > offset).flatten(1).sum(-1).float()
    outer = (mask_logits > -offset).flatten(1).sum(-1).float()
    return torch.where(outer > 0, inner / outer.clamp(min=1), torch.ones_like(outer))


def upsample_mask_logits(mask_logits: torch.Tensor, size: tuple[int, int], threshold: float = 0.5) -> Masks:
    """Low-resolution mask logits ``(N, h, w)`` to ``(H, W)`` masks as transformers does it, one at a time, each kept
    as the crop of its box.

    ``post_process_instance_segmentation``: sigmoid, bilinear to the image size, ``> mask_threshold``.
    """
    probs = mask_logits.float().sigmoid()
    return Masks.from_placed(size[::-1], (
        (0, 0, (F.interpolate(prob[None, None], size, mode="bilinear", align_corners=False)[0, 0] > threshold).numpy())
        for prob in probs))


def boxes_to_pixels(boxes_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised ``[0, 1]`` xyxy boxes (SAM 3's ``pred_boxes``) to clipped pixel boxes."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4) * np.array([width, height, width, height],
                                                                              dtype=np.float32)
    return clip_boxes(boxes, width, height)


def pixel_boxes_to_cxcywh(boxes_xyxy: np.ndarray, width: int, height: int) -> torch.Tensor:
    """Pixel xyxy boxes to the normalised ``(cx, cy, w, h)`` SAM 3's geometry encoder takes."""
    b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4) / np.array([width, height, width, height], np.float32)
    b = np.clip(b, 0.0, 1.0)
    cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
    return torch.from_numpy(cxcywh)


# ------------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Sam3Features:
    """The cached output of SAM 3's vision encoder for one image."""

    vision: Any  # transformers' Sam3VisionEncoderOutput (ViT last_hidden_state + FPN maps and positions)
    original_size: tuple[int, int]  # (H, W)

    @property
    def nbytes(self) -> int:
        """Bytes of this image's own tensors (the position encodings are shared by every image of one size)."""
        tensors = [self.vision.last_hidden_state, *self.vision.fpn_hidden_states]
        return sum(t.numel() * t.element_size() for t in tensors)


class Sam3ConceptSegmenter:
    """SAM 3 behind the :class:`~prelabel.models.protocols.Detector` protocol, returning masks with the boxes.

    Every phrase of every label is its own text prompt (one forward pass of the prompt side each); the
    vision features are computed once per image and kept in an LRU cache by image content, so further
    labels, a re-prediction, exemplar prompts and clicks skip the ViT (``encoder_calls`` counts its runs).
    Text features are cached per phrase.
    """

    def __init__(
        self,
        model: Sam3Model,
        tokenizer: Any,
        preprocessor: Sam3Preprocessor,
        model_id: str,
        random_weights: bool = False,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_bytes: int = 512 * 1024**2,
        tracker: Sam3TrackerModel | None = None,
        mask_threshold: float = 0.5,
    ) -> None:
        ensure_roi_align()
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.model_id = model_id
        self.random_weights = random_weights
        self.device = device
        self.dtype = dtype
        self.mask_threshold = mask_threshold
        self.max_text_tokens = int(model.config.text_config.max_position_embeddings)
        self.cache: LRUBytesCache[Sam3Features] = LRUBytesCache(cache_bytes)
        self._text_cache: OrderedDict[str, tuple[Any, torch.Tensor]] = OrderedDict()
        self._positions: dict[tuple, torch.Tensor] = {}
        self._vit_calls = 0
        self._text_lock = threading.Lock()
        self.tracker: Sam3TrackerSegmenter | None = None
        if tracker is not None:
            shared = tracker.vision_encoder.backbone is model.vision_encoder.backbone
            self.tracker = Sam3TrackerSegmenter(
                tracker, model_id, random_weights, device, dtype, cache_bytes // 4, preprocessor=preprocessor,
                backbone_features=(lambda image: self.vision_features(image).vision.last_hidden_state)
                if shared else None,
            )

    # --- vision side ----------------------------------------------------------------------------------
    @property
    def encoder_calls(self) -> int:
        """ViT runs: the concept model's, plus the tracker's own if it could not share the backbone."""
        own_tracker = self.tracker.own_encoder_calls if self.tracker is not None else 0
        return self._vit_calls + own_tracker

    @property
    def shares_backbone(self) -> bool:
        """Whether clicks reuse the concept model's ViT features (true for ``facebook/sam3``)."""
        return self.tracker is not None and self.tracker.backbone_features is not None

    @torch.inference_mode()
    def vision_features(self, image: np.ndarray) -> Sam3Features:
        """The image's vision features, from the cache when these pixels were seen before."""
        return self.cache.get_or_compute(image_key(image, self.model_id), lambda: self._encode(image),
                                         lambda features: features.nbytes)

    def _encode(self, image: np.ndarray) -> Sam3Features:
        pixel_values = self.preprocessor(image).to(device=self.device, dtype=self.dtype)
        vision = self.model.get_vision_features(pixel_values=pixel_values)
        vision.fpn_position_encoding = tuple(self._shared(t) for t in vision.fpn_position_encoding)
        self._vit_calls += 1
        return Sam3Features(vision, tuple(image.shape[:2]))

    def _shared(self, encoding: torch.Tensor) -> torch.Tensor:
        """One copy of each FPN position encoding (image-independent; ~110 MB per image at 1008 px otherwise)."""
        key = (tuple(encoding.shape), encoding.dtype)
        kept = self._positions.get(key)
        if kept is not None and torch.equal(kept, encoding):
            return kept
        self._positions[key] = encoding
        return encoding

    # --- text side ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def text_features(self, phrase: str) -> tuple[Any, torch.Tensor]:
        """The projected text features and attention mask of one phrase (cached, 256 phrases)."""
        phrase = phrase.lower().strip()
        with self._text_lock:
            if phrase in self._text_cache:
                self._text_cache.move_to_end(phrase)
                return self._text_cache[phrase]
        n_tokens = len(self.tokenizer(phrase)["input_ids"])
        if n_tokens > self.max_text_tokens:
            raise LabelError(f"the prompt {phrase!r} needs {n_tokens} tokens; SAM 3's text encoder takes "
                             f"{self.max_text_tokens}: shorten it")
        tokens = self.tokenizer([phrase], padding="max_length", max_length=self.max_text_tokens, return_tensors="pt")
        input_ids = tokens["input_ids"].to(self.device)
        attention_mask = tokens["attention_mask"].to(self.device)
        text = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        with self._text_lock:
            self._text_cache[phrase] = (text, attention_mask)
            while len(self._text_cache) > 256:
                self._text_cache.popitem(last=False)
        return text, attention_mask

    # --- prompts to instances -------------------------------------------------------------------------
    @torch.inference_mode()
    def run_prompt(
        self,
        image: np.ndarray,
        phrase: str,
        exemplar_boxes: np.ndarray | None = None,
        exemplar_labels: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """One prompt (a phrase, optionally with exemplar pixel boxes labelled 1/0) on the cached features.

        Returns per query: ``scores`` (query x presence), ``query_scores``, ``boxes`` (pixels),
        ``mask_logits`` (low resolution, torch), and the image-level ``presence``.
        """
        height, width = image.shape[:2]
        features = self.vision_features(image)
        text, attention_mask = self.text_features(phrase)
        kwargs: dict[str, torch.Tensor] = {}
        if exemplar_boxes is not None and len(exemplar_boxes):
            boxes = pixel_boxes_to_cxcywh(exemplar_boxes, width, height)
            labels = np.ones(len(boxes), np.int64) if exemplar_labels is None else np.asarray(exemplar_labels, np.int64)
            kwargs["input_boxes"] = boxes[None].to(self.device, self.dtype)
            kwargs["input_boxes_labels"] = torch.from_numpy(labels.reshape(1, -1)).to(self.device)
        out = self.model(vision_embeds=features.vision, text_embeds=text, attention_mask=attention_mask, **kwargs)
        query = out.pred_logits[0].float().sigmoid().cpu()
        presence = float(out.presence_logits[0].float().sigmoid().max()) if out.presence_logits is not None else 1.0
        return {
            "scores": (query * presence).numpy(),
            "query_scores": query.numpy(),
            "presence": presence,
            "boxes": boxes_to_pixels(out.pred_boxes[0].float().cpu().numpy(), width, height),
            "mask_logits": out.pred_masks[0].float().cpu(),
        }

    def detect(self, image: np.ndarray, labels: Sequence[LabelPrompt], floor: float) -> Regions:
        """Instances of every label scoring at least ``floor``, with their masks."""
        presence: dict[str, float] = {}
        parts = []
        for label_id, label in enumerate(labels):
            for phrase in label.prompts:
                result = self.run_prompt(image, phrase)
                presence[label.name] = max(presence.get(label.name, 0.0), result["presence"])
                parts.append((label_id, result, result["scores"] >= floor))
        regions = self._regions(image, labels, parts, {"presence": presence})
        self._store_click_features(image)
        return regions

    def find_similar(
        self,
        image: np.ndarray,
        labels: Sequence[LabelPrompt],
        label: str | int,
        positive_boxes: np.ndarray,
        negative_boxes: np.ndarray | None = None,
        *,
        floor: float,
        use_text: bool = True,
    ) -> Regions:
        """"Label one, find all": every instance like the positive exemplar boxes (pixels, xyxy) scoring at least
        ``floor``, as ``label``.

        Negative exemplar boxes steer away from false hits. The label's first phrase goes with the boxes
        (SAM 3's text + exemplar prompt) unless ``use_text`` is false (then the text is ``"visual"``, as
        transformers' processor does for box-only prompts).
        """
        names = [lb.name for lb in labels]
        label_id = label if isinstance(label, int) else names.index(label)
        prompt = labels[label_id]
        positive = np.asarray(positive_boxes, dtype=np.float32).reshape(-1, 4)
        negative = np.zeros((0, 4), np.float32) if negative_boxes is None else np.asarray(negative_boxes,
                                                                                             np.float32).reshape(-1, 4)
        if len(positive) == 0:
            raise BadRequest("an exemplar prompt needs at least one positive box")
        boxes = np.concatenate([positive, negative])
        box_labels = np.concatenate([np.ones(len(positive), np.int64), np.zeros(len(negative), np.int64)])
        result = self.run_prompt(image, prompt.prompts[0] if use_text else "visual", boxes, box_labels)
        meta = {"presence": {prompt.name: result["presence"]}, "exemplars": {"positive": len(positive),
                                                                              "negative": len(negative)}}
        return self._regions(image, labels, [(label_id, result, result["scores"] >= floor)], meta)

    def _regions(
        self, image: np.ndarray, labels: Sequence[LabelPrompt], parts: list[tuple[int, dict[str, Any], np.ndarray]],
        meta: dict[str, Any],
    ) -> Regions:
        height, width = image.shape[:2]
        names = tuple(lb.name for lb in labels)
        kept = [(lid, r, keep) for lid, r, keep in parts if keep.any()]
        if not kept:
            regions = Regions.empty((width, height), names, **meta)
            return regions.with_masks(np.zeros((0, height, width), bool), np.zeros(0, np.float32))
        logits = torch.cat([r["mask_logits"][torch.from_numpy(keep)] for _, r, keep in kept])
        return Regions(
            image_size=(width, height),
            label_names=names,
            boxes_xyxy=np.concatenate([r["boxes"][keep] for _, r, keep in kept]),
            scores=np.concatenate([r["scores"][keep] for _, r, keep in kept]),
            label_ids=np.concatenate([np.full(int(keep.sum()), lid) for lid, _, keep in kept]),
            masks=upsample_mask_logits(logits, (height, width), self.mask_threshold),
            data={"mask_score": stability_score(logits).numpy()},
            meta=meta,
        )

    # --- clicks (tracker on the same features) --------------------------------------------------------
    @property
    def store(self) -> EmbeddingStore | None:
        """The embedding store of the click features (the tracker's), if any."""
        return self.tracker.store if self.tracker is not None else None

    def use_store(self, url: str | None, budget_bytes: int, runtime: str) -> None:
        """Keep the tracker's click features in the store at ``url`` (``None``: no store); see
        :meth:`SamSegmenter.use_store`."""
        if self.tracker is not None:
            self.tracker.use_store(url, budget_bytes, runtime)

    def _store_click_features(self, image: np.ndarray) -> None:
        """With a store, a pre-label also writes the tracker's click features (its FPN neck on the cached ViT
        output), so the first click on this image in another process or after a restart runs no ViT."""
        if self.store is not None and self.shares_backbone:
            self.tracker.embed(image)

    def _clicker(self) -> Sam3TrackerSegmenter:
        if self.tracker is None:
            raise PrelabelError(
                f"the SAM 3 model {self.model_id!r} has no tracker for clicks: use the full facebook/sam3 "
                f"checkpoint (or a folder with a '{'tracker'}' sub-folder written by Sam3TrackerModel.save_pretrained), "
                f"or configure a segmenter"
            )
        return self.tracker

    def segment_points(
        self, image: np.ndarray, points: np.ndarray, point_labels: np.ndarray, box_xyxy: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """One mask from clicks (1 = object, 0 = background) and/or a box, by the SAM 3 tracker."""
        return self._clicker().segment_points(image, points, point_labels, box_xyxy)

    def segment_boxes(self, image: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[Masks, np.ndarray]:
        """One tracker mask per pixel box (SAM-style box prompts), decoded in one call."""
        return self._clicker().segment_boxes(image, boxes_xyxy)


class Sam3TrackerSegmenter(SamSegmenter):
    """``Sam3TrackerModel`` (SAM 2-style points/boxes prompts) behind the Segmenter protocol.

    With ``backbone_features`` (the concept model's cached ViT output for an image) the tracker runs only
    its own FPN neck on it, as ``Sam3VideoModel.get_vision_features_for_tracker`` does, so a click after a
    SAM 3 pre-label never runs the ViT again. Without it (a tracker whose backbone differs) it runs its own
    ViT once per image (``own_encoder_calls``). Either way the prompt-ready embedding is cached.
    """

    def __init__(
        self,
        model: Sam3TrackerModel,
        model_id: str,
        random_weights: bool = False,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_bytes: int = 128 * 1024**2,
        multimask: bool = True,
        preprocessor: Sam3Preprocessor | None = None,
        backbone_features: Callable[[np.ndarray], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(model, None, f"{model_id}#tracker", random_weights, device, dtype, cache_bytes, multimask,
                         encoder=lambda pixel_values: pixel_values)
        side = int(model.config.vision_config.backbone_config.image_size)
        self.preprocessor = preprocessor or Sam3Preprocessor(height=side, width=side)
        self.backbone_features = backbone_features
        self.own_encoder_calls = 0

    @property
    def side(self) -> int:
        return self.preprocessor.height

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocessor.height, self.preprocessor.width

    def _encode(self, image: np.ndarray) -> ImageEmbedding:
        """The tracker's prompt-ready feature maps from the (shared) ViT output; :meth:`embed` caches and stores them."""
        if self.backbone_features is not None:
            hidden = self.backbone_features(image)
        else:
            pixel_values = self.preprocessor(image).to(device=self.device, dtype=self.dtype)
            hidden = self.model.vision_encoder.backbone(pixel_values).last_hidden_state
            self.own_encoder_calls += 1
        self.encoder_calls += 1  # tracker embeddings computed (from the shared or its own ViT output)
        return ImageEmbedding(self.embeddings_from_backbone(hidden), tuple(image.shape[:2]),
                              (self.preprocessor.height, self.preprocessor.width))

    def embeddings_from_backbone(self, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """ViT ``last_hidden_state`` ``(B, h*w, C)`` to what ``Sam3TrackerModel.get_image_embeddings`` returns."""
        tracker = self.model
        batch = hidden.shape[0]
        height, width = tracker.prompt_encoder.image_embedding_size
        spatial = hidden.view(batch, height, width, -1).permute(0, 3, 1, 2)
        fpn, _ = tracker.vision_encoder.neck(spatial)
        maps = list(fpn)
        maps[0] = tracker.mask_decoder.conv_s0(maps[0])
        maps[1] = tracker.mask_decoder.conv_s1(maps[1])
        maps = [m.flatten(2).permute(2, 0, 1) for m in maps]
        maps[-1] = maps[-1] + tracker.no_memory_embedding
        return tuple(m.permute(1, 2, 0).view(batch, -1, *size) for m, size in zip(maps, tracker.backbone_feature_sizes))

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        return self.preprocessor(image), tuple(image.shape[:2]), (self.preprocessor.height, self.preprocessor.width)

    def upsample_masks(self, low_res: torch.Tensor, embedding: ImageEmbedding) -> np.ndarray:
        """Mask logits to the original size (SAM 3 stretches, no padding to crop), ``> 0``."""
        masks = F.interpolate(low_res[None], embedding.original_size, mode="bilinear", align_corners=False)[0]
        return (masks > 0).numpy()
