"""SAM 2.1 (transformers ``Sam2Model``) behind the same Segmenter interface as SAM.

transformers' ``Sam2ImageProcessor`` needs torchvision, which cannot be installed beside the CPU torch
wheel; SAM 2's preprocessing is small (stretch to the model's square input, ImageNet normalisation), so it
is done here with OpenCV, and masks are upsampled with ``torch.nn.functional.interpolate`` as
transformers' post-processing does.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from transformers import Sam2Model

from prelabel.core.masks import Masks
from prelabel.models.sam import ImageEmbedding, ImageEncoder, SamSegmenter, logits_to_masks

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class Sam2Segmenter(SamSegmenter):
    """SAM 2.1 image segmentation (no video memory): one cached embedding per image, batched box decoding.

    SAM 2 stretches every image to a square (no padding), so prompt coordinates scale per axis.
    """

    def __init__(
        self,
        model: Sam2Model,
        model_id: str,
        random_weights: bool = False,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_bytes: int = 512 * 1024**2,
        multimask: bool = True,
        encoder: ImageEncoder | None = None,
    ) -> None:
        super().__init__(model, None, model_id, random_weights, device, dtype, cache_bytes, multimask,
                         encoder or (lambda pixel_values: tuple(self.model.get_image_embeddings(pixel_values))))
        self.side = int(model.config.vision_config.backbone_config.image_size[0])

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """Bilinear resize to the square input, scale to [0, 1], ImageNet mean/std, channels first."""
        height, width = image.shape[:2]
        resized = cv2.resize(image, (self.side, self.side), interpolation=cv2.INTER_LINEAR)
        normalised = (resized.astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
        pixel_values = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))[None]
        return pixel_values, (height, width), (self.side, self.side)

    def upsample_masks(self, low_res: torch.Tensor, embedding: ImageEmbedding) -> Masks:
        """Mask logits to the original size (SAM 2 has no padding to crop)."""
        return logits_to_masks(low_res, embedding.original_size)
