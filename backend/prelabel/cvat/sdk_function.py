"""cvat-sdk auto-annotation functions: Grounding DINO + SAM detection, and SAM clicks for CVAT AI agents.

    cvat-cli task auto-annotate TASK_ID --function-module prelabel.cvat.sdk_function \\
        -p labels=str:"rivet=oxidized rivet|rusted bolt,crack"
    cvat-cli function create-native "SAM (prelabel)" --function-module prelabel.cvat.sdk_function \\
        -p kind=str:interactor
    cvat-cli function create-native "SAM 2.1 tracker (prelabel)" --function-module prelabel.cvat.sdk_function \\
        -p kind=str:tracker
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cvat_sdk.auto_annotation as cvataa
import numpy as np
import PIL.Image
from cvat_sdk import models

from prelabel.core.errors import PrelabelError
from prelabel.cvat.prompts import click_prompt, with_threshold
from prelabel.cvat.shapes import sdk_interaction_shapes, sdk_shapes
from prelabel.cvat.spec import CvatLabels
from prelabel.models.protocols import Tracker
from prelabel.models.specs import DEFAULT_TRACKER
from prelabel.pipeline import Labeler, build_labeler
from prelabel.settings import Settings

log = logging.getLogger(__name__)


class DetectionFunction:
    """A cvat-sdk ``DetectionFunction``: labels found by their text prompts, as masks, polygons or boxes."""

    def __init__(self, labeler: Labeler, labels: CvatLabels) -> None:
        self._labeler = labeler
        self._labels = labels
        self._label_specs = {label.name: (i, labels.types[label.name]) for i, label in enumerate(labels.prompts)}
        self._with_masks = any(kind != "rectangle" for kind in labels.types.values())
        self.spec = cvataa.DetectionFunctionSpec(
            labels=[cvataa.label_spec(name, i, type=kind) for name, (i, kind) in self._label_specs.items()]
        )

    def detect(
        self, context: cvataa.DetectionFunctionContext, image: PIL.Image.Image
    ) -> list[models.LabeledShapeRequest]:
        """Shapes at or above ``context.conf_threshold``; a frame that fails is logged and gets none."""
        try:
            prompts = with_threshold(self._labels.prompts, context.conf_threshold)
            regions = self._labeler.predict(np.asarray(image.convert("RGB")), prompts, with_masks=self._with_masks)
            return sdk_shapes(regions, self._label_specs, context.conv_mask_to_poly)
        except Exception:  # one bad frame must not abort the task's other frames
            log.exception("prelabel: frame %r failed; it gets no annotations", context.frame_name)
            return []


class InteractionFunction:
    """A cvat-sdk ``InteractionFunction`` (agents only): SAM from clicks and/or a box."""

    spec = cvataa.InteractionFunctionSpec(min_pos_points=0, min_neg_points=0, min_bounding_boxes=0)

    def __init__(self, labeler: Labeler) -> None:
        self._labeler = labeler

    def preprocess_image(self, context: cvataa.InteractionFunctionContext, image: PIL.Image.Image) -> np.ndarray:
        """The RGB pixels; SAM's embedding of them is cached by content, so later clicks skip the encoder."""
        return np.asarray(image.convert("RGB"))

    def detect(
        self,
        context: cvataa.InteractionFunctionContext,
        pp_image: np.ndarray,
        prompts: cvataa.InteractionPrompts,
    ) -> list[cvataa.InteractionResultShape]:
        """One mask shape with SAM's confidence; none when the mask is empty."""
        height, width = pp_image.shape[:2]
        points, point_labels, box = click_prompt(
            width, height, prompts.pos_points, prompts.neg_points, prompts.bounding_box
        )
        mask, score = self._labeler.click(pp_image, points, point_labels, box)
        return sdk_interaction_shapes(np.asarray(mask, dtype=bool), score)


@dataclass
class TrackingState:
    """What the tracker needs to continue one rectangle: its box and the frame it was on."""

    box: np.ndarray
    frame: np.ndarray


class TrackingFunction:
    """A cvat-sdk ``TrackingFunction`` (agents): rectangles followed from frame to frame by a video tracker
    (SAM 2.1 video, or any :class:`~prelabel.models.protocols.Tracker`), two frames per step."""

    spec = cvataa.TrackingFunctionSpec(supported_shape_types={"rectangle"})

    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker

    def preprocess_image(self, context: cvataa.TrackingFunctionContext, image: PIL.Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB"))

    def init_tracking_state(self, context: cvataa.TrackingFunctionShapeContext, pp_image: np.ndarray,
                            shape: cvataa.TrackableShape) -> TrackingState:
        points = np.asarray(shape.points, dtype=np.float32).reshape(-1, 2)
        return TrackingState(np.concatenate([points.min(axis=0), points.max(axis=0)]), pp_image)

    def track(self, context: cvataa.TrackingFunctionShapeContext, pp_image: np.ndarray,
              state: TrackingState) -> cvataa.TrackableShape | None:
        """The rectangle on ``pp_image``, or None when the tracker lost it (score below 0.5)."""
        boxes, scores = next(iter(self._tracker.track([state.frame, pp_image], state.box[None])))
        if float(scores[0]) < 0.5:
            return None
        height, width = pp_image.shape[:2]
        box = np.clip(boxes[0], 0, [width, height, width, height]).astype(np.float32)
        state.box, state.frame = box, pp_image
        return cvataa.TrackableShape(type="rectangle", points=[round(float(v), 2) for v in box])


def create(
    labels: str = "",
    kind: str = "detector",
    label_type: str = "mask",
    detector: str = "",
    segmenter: str = "",
    device: str = "",
    tracker: str = "",
) -> DetectionFunction | InteractionFunction | TrackingFunction:
    """The function cvat-cli loads (``-p NAME=TYPE:VALUE`` become these arguments).

    ``labels`` uses the ``--labels`` syntax (default ``PRELABEL_LABELS``); ``kind`` is ``detector``,
    ``interactor`` or ``tracker``; ``label_type`` (mask, polygon, rectangle) is the shape of every label; empty
    model arguments fall back to ``PRELABEL_DETECTOR`` / ``PRELABEL_SEGMENTER`` / ``PRELABEL_VIDEO_TRACKER``
    (default for a tracker: SAM 2.1 Hiera-tiny) / ``PRELABEL_DEVICE``.
    """
    central = Settings.load()
    overrides = {"detector": detector or None, "segmenter": segmenter or None, "device": device or None}
    if kind == "interactor":
        return InteractionFunction(build_labeler(central, **{**overrides, "detector": ""}))
    if kind == "tracker":
        spec = tracker or central.video_tracker or DEFAULT_TRACKER
        return TrackingFunction(build_labeler(central, detector="", segmenter="", device=device or None,
                                              video_tracker=spec).tracker)
    if kind != "detector":
        raise PrelabelError(f"kind must be 'detector', 'interactor' or 'tracker', got {kind!r}")
    label_text = labels or central.labels
    if not label_text.strip():
        raise PrelabelError("no labels given: pass -p labels=str:'cat,dog=puppy|dog' or set PRELABEL_LABELS")
    return DetectionFunction(build_labeler(central, **overrides), CvatLabels.parse(label_text, label_type))
