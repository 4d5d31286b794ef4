"""The Labeler: detector boxes (or a concept model's masks), then segmenter masks for them, as one Regions."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.geometry import nms_per_label
from prelabel.core.labels import LabelPrompt, box_cuts
from prelabel.core.model_version import model_version
from prelabel.core.regions import Regions
from prelabel.core.scoring import Scoring
from prelabel.core.uncertainty import score_regions
from prelabel.models.protocols import ConceptSegmenter, Detector, Segmenter, Tracker
from prelabel.pipeline.exploration import Exploration, image_seed, split_candidates
from prelabel.settings import Settings


@dataclass(frozen=True)
class Thresholds:
    """Thresholds and limits of one Labeler (all of them shape predictions, so all are in ``model_version``).

    ``text_threshold`` is Grounding DINO's (and MM Grounding DINO's): no label's cut lies below it. Other
    families have none (``None``, and then it is not part of ``model_version``); :func:`prelabel.pipeline.
    labeler_thresholds` sets it by the detector's family.
    """

    box_threshold: float = Settings.box_threshold  # every default is the Settings' own
    text_threshold: float | None = None
    nms_iou: float = Settings.nms_iou
    max_detections: int = Settings.max_detections

    def as_settings(self) -> dict[str, float | int]:
        """The :class:`~prelabel.settings.Settings` fields these thresholds are made of (no text threshold
        where there is none: the settings' default then stands, unused)."""
        fields = asdict(self)
        return {k: v for k, v in fields.items() if v is not None}

    def cuts(self, labels: Sequence[LabelPrompt]) -> np.ndarray:
        """The score each label's regions need to be shown: its own cut or the default, not below the text
        threshold."""
        cuts = box_cuts(labels, self.box_threshold)
        return cuts if self.text_threshold is None else np.maximum(cuts, self.text_threshold)


class Labeler:
    """Runs detector then segmenter on an image and returns :class:`Regions`.

    Model code stays behind the Detector/Segmenter protocols; nothing here knows about any tool. Build one
    with :func:`prelabel.pipeline.build_labeler`; either model may be absent (boxes only, or clicks only).
    """

    def __init__(self, detector: Detector | None, segmenter: Segmenter | None, config: Thresholds | None = None,
                 dtype: str = "fp32", tracker: Tracker | None = None) -> None:
        self.detector = detector
        self.segmenter = segmenter
        self.config = config or Thresholds()
        self.dtype = dtype
        self.tracker = tracker  # videos only: propagates boxes between keyframes (None: linear interpolation)

    def expect_images(self, count: int | None) -> None:
        """The job ahead encodes ``count`` images (``None``: open-ended, a server): a runtime whose conversion
        would pay off starts it in the background (the models keep answering meanwhile)."""
        if self.segmenter is not None:
            self.segmenter.expect_images(count)

    @property
    def random_weights(self) -> bool:
        """True when any model has random weights: its outputs are meaningless."""
        return any(model is not None and model.random_weights for model in (self.detector, self.segmenter, self.tracker))

    @property
    def models(self) -> dict[str, str | None]:
        """What identifies the models: their ids (runtime included) and the dtype."""
        models = {"detector": self.detector.model_id if self.detector else None,
                  "segmenter": self.segmenter.model_id if self.segmenter else None, "dtype": self.dtype}
        if self.tracker is not None:  # absent otherwise, so image model_versions do not change
            models["tracker"] = self.tracker.model_id
        return models

    def model_version(self, labels: Sequence[LabelPrompt], calibration: Scoring | None = None,
                      explore: Exploration | None = None, video: Mapping[str, object] | None = None) -> str:
        """A stable id of models, prompts, thresholds, calibration, exploration (candidates are part of what the
        model shows) and the video settings of a video prediction; it changes when any of them does."""
        thresholds = {**config_dict(self.config, explore), **({"video": dict(video)} if video else {})}
        return model_version(self.models, labels, thresholds, self.random_weights,
                             {"calibration": calibration.to_dict()} if calibration else None)

    def predict(
        self,
        image: np.ndarray,
        labels: Sequence[LabelPrompt],
        with_masks: bool = True,
        calibration: Scoring | None = None,
        explore: Exploration | None = None,
    ) -> Regions:
        """Detect ``labels`` on an ``(H, W, 3)`` uint8 RGB image; segment every kept box when asked.

        Every region gets its uncertainty signals and confidence (see :mod:`prelabel.core.uncertainty`);
        ``calibration`` (learned from feedback) replaces the heuristic confidence. With an active ``explore``
        the detector runs once with the cuts lowered to ``explore.floor``, and a sample of the below-threshold
        detections follows the shown regions as candidates (:mod:`prelabel.pipeline.exploration`).
        """
        if self.detector is None:
            raise PrelabelError("pre-labeling needs a detector; this labeler was built for clicks only "
                                "(set PRELABEL_DETECTOR / --detector)")
        cfg = self.config
        started = time.perf_counter()
        shown = cfg.cuts(labels)
        exploring = explore is not None and explore.active
        # One forward pass at the lowest cut; exploring, each label's cut is lowered to the exploration floor, and
        # above a label's own cut the regions are the same as without.
        cuts = np.minimum(shown, explore.floor) if exploring else shown
        regions = self.detector.detect(image, labels, float(cuts.min(initial=1.0)))
        regions = regions.select(np.flatnonzero(regions.scores >= cuts[regions.label_ids]))
        keep = nms_per_label(regions.boxes_xyxy, regions.scores, regions.label_ids, cfg.nms_iou)
        if exploring:
            regions = split_candidates(regions.select(keep), shown, explore, image_seed(image), cfg.max_detections)
        else:
            regions = regions.select(keep[: cfg.max_detections])
        if calibration is not None:  # boxes corrected as annotators adjust them, where that was learned
            regions = calibration.correct_boxes(regions)
        detected = time.perf_counter()
        masks_from_detector = regions.masks is not None  # SAM 3 segments itself: no second image encoder
        if not with_masks and masks_from_detector:
            regions = replace(regions, masks=None).with_data(mask_score=None)
        elif with_masks and self.segmenter is not None and not masks_from_detector:
            masks, mask_scores = self.segmenter.segment_boxes(image, regions.boxes_xyxy)
            regions = regions.with_masks(masks, mask_scores)
        regions = score_regions(regions, box_cuts(labels, cfg.box_threshold), calibration)
        meta = {
            **regions.meta,  # the detector's own provenance (SAM 3: per-label presence)
            "detector": self.detector.model_id,
            "segmenter": self.segmenter.model_id if self.segmenter and with_masks and not masks_from_detector else None,
            "random_weights": self.random_weights,
            "model_version": self.model_version(labels, calibration, explore),
            "seconds": {"detect": round(detected - started, 4), "segment": round(time.perf_counter() - detected, 4)},
        }
        return replace(regions, meta=meta)

    def click(
        self,
        image: np.ndarray,
        points: np.ndarray,
        point_labels: np.ndarray,
        box_xyxy: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        """An interactive SAM mask from clicks and/or a box; reuses the cached image embedding.

        Without a segmenter, a detector that segments clicks itself (SAM 3's tracker on its cached
        vision features) answers them.
        """
        segmenter = self.segmenter
        if segmenter is None and isinstance(self.detector, ConceptSegmenter):
            segmenter = self.detector
        if segmenter is None:
            raise PrelabelError("interactive segmentation needs a segmenter; none is configured "
                                "(set PRELABEL_SEGMENTER / --segmenter)")
        return segmenter.segment_points(image, points, point_labels, box_xyxy)

    def find_similar(
        self,
        image: np.ndarray,
        labels: Sequence[LabelPrompt],
        label: str,
        positive_boxes: np.ndarray,
        negative_boxes: np.ndarray | None = None,
        calibration: Scoring | None = None,
    ) -> Regions:
        """"Label one, find all": every instance like the exemplar pixel boxes, as ``label`` (SAM 3 detectors).

        Positive boxes are drawn instances of ``label``; negative boxes are false hits to steer away from.
        The result is cut by the label's threshold, NMS-ed and scored like :meth:`predict`.
        """
        if not isinstance(self.detector, ConceptSegmenter):
            name = self.detector.model_id if self.detector else "none"
            raise PrelabelError(f"exemplar prompts need a SAM 3 detector (PRELABEL_DETECTOR); the detector is {name!r}")
        cfg = self.config
        started = time.perf_counter()
        cuts = cfg.cuts(labels)
        floor = float(cuts[[lb.name for lb in labels].index(label)])
        regions = self.detector.find_similar(image, labels, label, positive_boxes, negative_boxes, floor=floor)
        regions = regions.select(np.flatnonzero(regions.scores >= cuts[regions.label_ids]))
        keep = nms_per_label(regions.boxes_xyxy, regions.scores, regions.label_ids, cfg.nms_iou)
        regions = regions.select(keep[: cfg.max_detections])
        regions = score_regions(regions, box_cuts(labels, cfg.box_threshold), calibration)
        meta = {**regions.meta, "detector": self.detector.model_id, "segmenter": None,
                "random_weights": self.random_weights, "model_version": self.model_version(labels, calibration),
                "seconds": {"detect": round(time.perf_counter() - started, 4), "segment": 0.0}}
        return replace(regions, meta=meta)


def config_dict(config: Thresholds, explore: Exploration | None = None) -> dict:
    """The config part of ``model_version``: the thresholds, and the exploration when it is on (so a version
    without exploration is what it was before exploration existed)."""
    out = asdict(config)
    if config.text_threshold is None:  # a family without a text threshold: not part of its version
        del out["text_threshold"]
    if explore is not None and explore.active:
        out["explore"] = explore.to_dict()
    return out
