"""How an image becomes Regions: the Labeler (detector, segmenter, thresholds, NMS), tiling, and its one builder."""

from prelabel.pipeline.build import build_labeler, exploration, labeler_thresholds, planned_model_version
from prelabel.pipeline.exploration import Exploration
from prelabel.pipeline.labeler import Labeler, Thresholds

__all__ = ["Exploration", "Labeler", "Thresholds", "build_labeler", "exploration", "labeler_thresholds",
           "planned_model_version"]
