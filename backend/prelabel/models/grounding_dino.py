"""Grounding DINO (transformers) as a text-prompted detector that returns label ids, not phrases."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

from prelabel.core.geometry import clip_boxes
from prelabel.core.labels import LabelError, LabelPrompt
from prelabel.core.regions import Regions

FP32_ISLANDS = ("MultiScaleDeformableAttention",)
"""Modules of Grounding DINO that run in fp32 inside a reduced-precision model.

The multi-scale deformable attention (``grid_sample`` over the feature pyramid, pure PyTorch in
transformers) returns NaN for some queries in bf16 (found with forward hooks on a random-full bf16 forward:
the first non-finite output of the whole model is ``encoder.layers.0.deformable_layer.self_attn.attn``;
from there the NaNs spread to every score). In fp32 it is exact, and it is cheap: no weights, a gather and a
weighted sum."""


def keep_fp32_islands(model: torch.nn.Module) -> int:
    """Run the :data:`FP32_ISLANDS` modules of ``model`` in fp32 (inputs up-cast, output cast back); returns
    how many were wrapped. Forward is replaced on the instances, so the state dict keys stay the same."""
    count = 0
    for module in model.modules():
        if type(module).__name__ in FP32_ISLANDS:
            module.forward = _in_fp32(module.forward)
            count += 1
    return count


def _in_fp32(forward):
    def run(*args, **kwargs):
        dtypes = [a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
        up = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        out = forward(*up, **{k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                              for k, v in kwargs.items()})
        return out.to(dtypes[0]) if dtypes else out

    return run


@dataclass(frozen=True)
class PromptChunk:
    """One text prompt sent to the model and, per label, the character spans of its phrases."""

    text: str
    label_spans: dict[int, list[tuple[int, int]]]


class GroundingDinoDetector:
    """Grounding DINO behind the :class:`~prelabel.models.protocols.Detector` protocol.

    Every phrase of every label becomes ``"phrase."`` in the prompt; detections are mapped back to labels
    through the character spans of those phrases and the tokenizer's offsets, so a label that is a
    substring of another ("car" in "car door") is never confused. Label lists longer than the text
    encoder's token limit are split into several prompts.
    """

    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        processor: GroundingDinoProcessor,
        model_id: str,
        random_weights: bool = False,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.model_id = model_id
        self.random_weights = random_weights
        self.device = device
        self.dtype = dtype
        # [CLS] and [SEP] take two of the text encoder's positions.
        self.max_prompt_tokens = int(model.config.max_text_len) - 2
        self.backbone_calls = 0  # image backbone (Swin) runs: one per image, however many prompts it takes
        self._backbone = model.model.backbone
        self._backbone_forward = self._backbone.forward
        self._backbone_memo: tuple[torch.Tensor, object] | None = None
        self._backbone.forward = self._counted_backbone  # an instance attribute: state dict keys unchanged
        self.fp32_islands = keep_fp32_islands(self.model) if dtype != torch.float32 else 0
        # Runs the whole forward in another runtime where it can (OpenVINO: models/detector_openvino.py);
        # returns None where it cannot yet, and PyTorch runs.
        self.accelerator: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor] | None] | None = None

    def _counted_backbone(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> object:
        """The image backbone, reusing its output for the same pixel tensor inside :meth:`_image_once`."""
        memo = self._backbone_memo
        if memo is not None and memo[0] is pixel_values:
            return memo[1]
        out = self._backbone_forward(pixel_values, pixel_mask)
        self.backbone_calls += 1
        if memo is not None:
            self._backbone_memo = (pixel_values, out)
        return out

    @contextmanager
    def _image_once(self) -> Iterator[None]:
        """Inside: the backbone's features of one pixel tensor are computed once for every prompt chunk."""
        self._backbone_memo = (torch.empty(0), None)
        try:
            yield
        finally:
            self._backbone_memo = None

    def chunk_prompts(self, labels: Sequence[LabelPrompt]) -> list[PromptChunk]:
        """Split the labels' phrases into prompts that fit the token limit, keeping a label's phrases together."""
        chunks: list[PromptChunk] = []
        text, spans, used = "", {}, 0
        for label_id, label in enumerate(labels):
            phrases = [p.lower() for p in label.prompts]
            cost = sum(self._count_tokens(p + ".") for p in phrases)
            if cost > self.max_prompt_tokens:
                raise LabelError(
                    f"the prompts of label {label.name!r} need {cost} tokens; the text encoder takes "
                    f"{self.max_prompt_tokens}: shorten them"
                )
            if used + cost > self.max_prompt_tokens:
                chunks.append(PromptChunk(text.strip(), spans))
                text, spans, used = "", {}, 0
            for phrase in phrases:
                start = len(text)
                text += phrase + ". "
                spans.setdefault(label_id, []).append((start, start + len(phrase)))
            used += cost
        if spans:
            chunks.append(PromptChunk(text.strip(), spans))
        return chunks

    def _count_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def detect(self, image: np.ndarray, labels: Sequence[LabelPrompt], floor: float) -> Regions:
        """Query boxes whose best label scores at least ``floor``, as that label.

        A box's score for a label is the highest token probability over that label's phrases (the text
        threshold, a floor under every label's cut, is the Labeler's to apply).
        """
        height, width = image.shape[:2]
        names = tuple(label.name for label in labels)
        boxes, scores, label_ids = [], [], []
        chunks = self.chunk_prompts(labels)
        pixels = self._pixels(image) if len(chunks) > 1 else None  # preprocessed once for all chunks
        with self._image_once():
            outputs = [self._run_chunk(image, chunk, pixels) for chunk in chunks]
        for chunk_boxes, label_scores, chunk_labels in outputs:
            best = label_scores.argmax(axis=1)
            best_score = label_scores[np.arange(len(best)), best]
            label_of_best = np.asarray(chunk_labels)[best]
            keep = best_score >= floor
            boxes.append(chunk_boxes[keep])
            scores.append(best_score[keep])
            label_ids.append(label_of_best[keep])
        all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        return Regions(
            image_size=(width, height),
            label_names=names,
            boxes_xyxy=clip_boxes(all_boxes, width, height),
            scores=np.concatenate(scores) if scores else np.zeros(0),
            label_ids=np.concatenate(label_ids) if label_ids else np.zeros(0),
        )

    def _pixels(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """The image processor's ``pixel_values`` and ``pixel_mask`` on the model's device and dtype."""
        inputs = self.processor.image_processor(images=image, return_tensors="pt")
        return {"pixel_values": inputs["pixel_values"].to(self.device, self.dtype),
                "pixel_mask": inputs["pixel_mask"].to(self.device)}

    @torch.inference_mode()
    def _run_chunk(self, image: np.ndarray, chunk: PromptChunk,
                   pixels: dict[str, torch.Tensor] | None = None) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Pixel boxes ``(Q, 4)``, per-label scores ``(Q, L)`` and the label ids of the columns."""
        height, width = image.shape[:2]
        if pixels is None:
            inputs = self.processor(images=image, text=chunk.text, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        else:
            text = self.processor.tokenizer(chunk.text, return_tensors="pt")
            inputs = {**{k: v.to(self.device) for k, v in text.items()}, **pixels}
        graph = self.accelerator(inputs) if self.accelerator is not None else None
        if graph is None:
            outputs = self.model(**inputs)
            graph = (outputs.logits, outputs.pred_boxes)
        logits, pred_boxes = graph
        probs = logits[0].float().sigmoid().cpu().numpy()  # (queries, max_text_len)
        offsets = self.processor.tokenizer(chunk.text, return_offsets_mapping=True)["offset_mapping"]
        label_ids = sorted(chunk.label_spans)
        columns = []
        for label_id in label_ids:
            tokens = [
                t
                for t, (start, end) in enumerate(offsets)
                if end > start and any(start >= s and end <= e for s, e in chunk.label_spans[label_id])
            ]
            columns.append(probs[:, tokens].max(axis=1))
        cx, cy, w, h = pred_boxes[0].float().cpu().numpy().T
        boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
        return boxes, np.stack(columns, axis=1), label_ids

