"""prelabel: Grounding DINO + SAM pre-annotations for Label Studio and CVAT."""

from prelabel.labels import LabelPrompt, parse_labels
from prelabel.regions import Regions

__version__ = "0.1.0"
__all__ = ["LabelPrompt", "Regions", "parse_labels", "__version__"]
