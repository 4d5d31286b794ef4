"""How an image becomes Regions: the Labeler (detector, segmenter, thresholds, NMS), tiling, and its one builder."""

from prelabel.pipeline.build import build_labeler, exploration, labeler_config, planned_model_version
from prelabel.pipeline.exploration import Exploration
from prelabel.pipeline.labeler import Labeler, LabelerConfig

__all__ = ["Exploration", "Labeler", "LabelerConfig", "build_labeler", "exploration", "labeler_config",
           "planned_model_version"]
