"""SAM 2.1 video (transformers ``Sam2VideoModel``) behind the :class:`~prelabel.models.protocols.Tracker` protocol.

Frames are streamed into an inference session one at a time; after each frame the session is pruned to a
sliding window (the prompted frame plus the last ``max(num_maskmem, max_object_pointers_in_encoder)`` tracked
frames, which is all SAM 2's memory attention reads), so memory stays flat over a video of any length.
The video processor of transformers needs torchvision (not installable beside the CPU torch wheel); the
preprocessing is the same as :mod:`prelabel.models.sam2`'s (square stretch, ImageNet normalisation).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from transformers import Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from prelabel.models.sam2 import _IMAGENET_MEAN, _IMAGENET_STD


class Sam2VideoTracker:
    """Tracks box prompts with SAM 2's memory bank; a box per frame is the bounding box of the predicted mask."""

    def __init__(self, model: Sam2VideoModel, model_id: str, random_weights: bool = False, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.model_id = model_id
        self.random_weights = random_weights
        self.device = device
        self.dtype = dtype
        self.side = int(model.config.image_size if isinstance(model.config.image_size, int)
                        else model.config.image_size[0])
        self.window = max(int(model.config.num_maskmem), int(model.config.max_object_pointers_in_encoder))
        self.peak_stored_frames = 0  # the most per-object frame outputs held at once (bounded by window + 1)

    def preprocess(self, frame: np.ndarray) -> torch.Tensor:
        resized = cv2.resize(frame, (self.side, self.side), interpolation=cv2.INTER_LINEAR)
        normalised = (resized.astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1))).to(self.dtype)

    @torch.inference_mode()
    def track(self, frames: Iterable[np.ndarray], boxes_xyxy: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        iterator = iter(frames)
        first = next(iterator, None)
        if first is None or not len(boxes):
            for _ in iterator:
                yield np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
            return
        height, width = first.shape[:2]
        session = Sam2VideoInferenceSession(video_height=height, video_width=width, inference_device=self.device,
                                            inference_state_device=self.device, video_storage_device=self.device,
                                            dtype=self.dtype)
        session.add_new_frame(self.preprocess(first), 0)
        scale = np.array([self.side / width, self.side / height] * 2, dtype=np.float32)
        for obj_id, box in enumerate(boxes):
            obj_idx = session.obj_id_to_idx(obj_id)
            coords = torch.from_numpy((box * scale).reshape(1, 1, 2, 2)).to(self.device, torch.float32)
            session.add_point_inputs(obj_idx, 0, {"point_coords": coords,
                                                  "point_labels": torch.tensor([[[2, 3]]], dtype=torch.int32)})
        session.obj_with_new_inputs = list(range(len(boxes)))
        self.model(session, frame_idx=0)
        last = boxes.copy()
        for index, frame in enumerate(iterator, start=1):
            output = self.model(session, frame=self.preprocess(frame), frame_idx=index)
            last, scores = self._boxes(output.pred_masks, output.object_score_logits, (height, width), last)
            self._prune(session, index)
            yield last, scores

    def _boxes(self, pred_masks: torch.Tensor, score_logits: torch.Tensor, size: tuple[int, int],
               previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        masks = F.interpolate(pred_masks.float().reshape(-1, 1, *pred_masks.shape[-2:]), size, mode="bilinear",
                              align_corners=False)[:, 0] > 0
        scores = torch.sigmoid(score_logits.float().reshape(-1)).cpu().numpy()
        boxes = previous.copy()
        for i, mask in enumerate(masks.cpu().numpy()):
            ys, xs = np.nonzero(mask)
            if len(xs):
                boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            else:
                scores[i] = min(scores[i], 0.0)  # no pixel: the object is gone from this frame
        return boxes, scores.astype(np.float32)

    def _prune(self, session: Sam2VideoInferenceSession, index: int) -> None:
        """Keep only what the memory attention can still read: the window of recent outputs and the current frame."""
        for frame_idx in [i for i in session.processed_frames if i < index]:
            del session.processed_frames[frame_idx]  # the prompted frame's outputs are stored; its pixels are not needed
        for outputs in session.output_dict_per_obj.values():
            recent = outputs["non_cond_frame_outputs"]
            for frame_idx in [i for i in recent if i < index - self.window]:
                del recent[frame_idx]
            for out in recent.values():
                out.pop("high_res_masks", None)  # only the current frame's is needed (memory encoding is done)
            self.peak_stored_frames = max(self.peak_stored_frames, len(recent) + len(outputs["cond_frame_outputs"]))
        for tracked in session.frames_tracked_per_obj.values():
            for frame_idx in [i for i in tracked if i < index - self.window]:
                del tracked[frame_idx]
