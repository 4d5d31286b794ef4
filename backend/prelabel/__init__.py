"""prelabel: Grounding DINO + SAM pre-annotations for Label Studio and CVAT."""

from prelabel.core.labels import LabelPrompt, parse_labels
from prelabel.core.regions import Regions

__version__ = "0.1.0"
__all__ = ["LabelPrompt", "Regions", "__version__", "parse_labels"]
