"""The benchmark's baseline: Grounding DINO + SAM served "the usual way".

This is how Label Studio's example ML backends and the transformers tutorials run the two models, and what
``prelabel bench`` measures prelabel against, on the SAME loaded model objects (same weights, same dtype,
same device), so any difference comes from how the models are driven, not from the models:

* every request decodes the image bytes again (PIL);
* every request runs the SAM processor and the full SAM image encoder again (no embedding cache), so an
  interactive click costs a whole encoder pass;
* Grounding DINO boxes come from transformers' ``post_process_grounded_object_detection``;
* SAM is called once per box, each call re-running the processor on the image with that box
  (``processor(image, input_boxes=...)``, ``pixel_values`` dropped, ``image_embeddings`` passed in: the
  transformers SAM tutorial's pattern), and all three multimask outputs are upsampled.

It is deliberately not optimised; it is not used by prelabel itself.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor, SamModel, SamProcessor


@dataclass(frozen=True)
class NaiveRegion:
    """One detection of the naive pipeline."""

    box_xyxy: list[float]
    label: str
    score: float
    mask: np.ndarray


class NaiveReference:
    """Per-request Grounding DINO + SAM with no caching and one SAM call per box."""

    def __init__(
        self,
        dino: GroundingDinoForObjectDetection,
        dino_processor: GroundingDinoProcessor,
        sam: SamModel,
        sam_processor: SamProcessor,
        box_threshold: float,
        text_threshold: float,
        max_boxes: int,
    ) -> None:
        self.dino, self.dino_processor = dino, dino_processor
        self.sam, self.sam_processor = sam, sam_processor
        self.box_threshold, self.text_threshold, self.max_boxes = box_threshold, text_threshold, max_boxes
        self.device = next(sam.parameters()).device
        self.dtype = next(sam.parameters()).dtype

    @staticmethod
    def _decode(image_bytes: bytes) -> Image.Image:
        return Image.open(io.BytesIO(image_bytes)).convert("RGB")

    def _inputs(self, batch: dict) -> dict:
        """Model inputs on the model's device and dtype; SAM's size bookkeeping stays with the processor."""
        return {k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
                for k, v in batch.items() if k not in ("original_sizes", "reshaped_input_sizes")}

    def _detect(self, image: Image.Image, label_names: list[str]) -> tuple[dict, list[int]]:
        """Grounding DINO as the model card drives it: detections and the indices of the best ``max_boxes``."""
        text = ". ".join(name.lower() for name in label_names) + "."
        inputs = self.dino_processor(images=image, text=text, return_tensors="pt")
        outputs = self.dino(**self._inputs(inputs))
        detections = self.dino_processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold,
            target_sizes=[image.size[::-1]],
        )[0]
        return detections, detections["scores"].argsort(descending=True)[: self.max_boxes].tolist()

    @torch.no_grad()
    def prelabel(self, image_bytes: bytes, label_names: list[str]) -> list[NaiveRegion]:
        """Boxes for the labels, then one SAM mask per box."""
        image = self._decode(image_bytes)
        detections, order = self._detect(image, label_names)
        sam_inputs = self.sam_processor(image, return_tensors="pt")
        embeddings = self.sam.get_image_embeddings(sam_inputs["pixel_values"].to(self.device, self.dtype))
        regions = []
        for i in order:
            box = detections["boxes"][i].float().tolist()
            mask, _ = self._segment(image, embeddings, input_boxes=[[box]])
            regions.append(NaiveRegion(box, str(detections["text_labels"][i]), float(detections["scores"][i]), mask))
        return regions

    @torch.no_grad()
    def prelabel_batched(self, image_bytes: bytes, label_names: list[str]) -> list[NaiveRegion]:
        """The model cards' batch pre-labeling: boxes, one SAM encoder call and ONE batched decoder call for
        all boxes of the image (the main job's naive reference; :meth:`prelabel` is the per-box backend)."""
        image = self._decode(image_bytes)
        detections, order = self._detect(image, label_names)
        if not order:
            return []
        boxes = [detections["boxes"][i].float().tolist() for i in order]
        sam_inputs = self.sam_processor(image, input_boxes=[boxes], return_tensors="pt")
        embeddings = self.sam.get_image_embeddings(sam_inputs.pop("pixel_values").to(self.device, self.dtype))
        sam_out = self.sam(image_embeddings=embeddings, **self._inputs(sam_inputs))
        masks = self.sam_processor.image_processor.post_process_masks(
            sam_out.pred_masks.float().cpu(), sam_inputs["original_sizes"], sam_inputs["reshaped_input_sizes"]
        )[0]  # (boxes, 3, H, W)
        best = sam_out.iou_scores[0].float().argmax(dim=-1)
        return [NaiveRegion(box, str(detections["text_labels"][i]), float(detections["scores"][i]),
                            masks[n, int(best[n])].numpy()) for n, (i, box) in enumerate(zip(order, boxes))]

    @torch.no_grad()
    def click(self, image_bytes: bytes, point_xy: tuple[float, float]) -> tuple[np.ndarray, float]:
        """An interactive click: decode, encode and decode again, as a stateless backend does."""
        image = self._decode(image_bytes)
        inputs = self.sam_processor(image, input_points=[[[list(point_xy)]]], return_tensors="pt")
        outputs = self.sam(**self._inputs(inputs))
        return self._best_mask(outputs, inputs)

    def _segment(self, image: Image.Image, embeddings: torch.Tensor, **prompt: list) -> tuple[np.ndarray, float]:
        inputs = self.sam_processor(image, return_tensors="pt", **prompt)
        inputs.pop("pixel_values")
        outputs = self.sam(image_embeddings=embeddings, **self._inputs(inputs))
        return self._best_mask(outputs, inputs)

    def _best_mask(self, outputs: object, inputs: dict) -> tuple[np.ndarray, float]:
        masks = self.sam_processor.image_processor.post_process_masks(
            outputs.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0][0]
        scores = outputs.iou_scores[0, 0].float().cpu()
        best = int(scores.argmax())
        return masks[best].numpy(), float(scores[best])
