"""Model specs that need no torch to reason about: the defaults and the table of random-weight specs.

A spec names a model: a hub id, a local folder written by ``save_pretrained``, an official checkpoint
file, or one of the random-weight specs below (the real architectures, randomly initialised, for offline
tests and honest timings; their outputs mean nothing).
"""

from __future__ import annotations

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_SEGMENTER = "facebook/sam-vit-base"

# spec -> (kind, what it builds). "both" specs name a detector and a segmenter of that size.
RANDOM_SPECS: dict[str, tuple[str, str]] = {
    "random-tiny": ("both", "Grounding DINO / SAM, tiny configs (tests)"),
    "random-full": ("both", "grounding-dino-tiny / sam-vit-base shapes (timings)"),
    "random-full-vit-h": ("segmenter", "sam-vit-huge shapes"),
    "random-full-slimsam-50": ("segmenter", "SlimSAM uniform-50 shapes"),
    "random-full-slimsam-77": ("segmenter", "SlimSAM uniform-77 shapes"),
    "random-full-sam2-tiny": ("segmenter", "SAM 2.1 Hiera-tiny shapes"),
    "random-full-sam2-small": ("segmenter", "SAM 2.1 Hiera-small shapes"),
    "random-tiny-sam2": ("segmenter", "SAM 2.1, tiny config (tests)"),
    "random-tiny-sam2-video": ("tracker", "SAM 2.1 video tracker, tiny config (tests)"),
    "random-full-sam2-tiny-video": ("tracker", "SAM 2.1 video tracker, Hiera-tiny shapes (timings)"),
}
DEFAULT_TRACKER = "facebook/sam2.1-hiera-tiny"


def is_random(spec: str | None) -> bool:
    """Whether a spec builds random weights (its outputs are not predictions)."""
    return spec in RANDOM_SPECS


def random_specs(kind: str) -> tuple[str, ...]:
    """The random specs usable as a ``detector``, a ``segmenter`` or a ``tracker``."""
    return tuple(spec for spec, (spec_kind, _) in RANDOM_SPECS.items() if spec_kind in (kind, "both"))


def segmenter_model_id(spec: str, runtime: str = "torch") -> str:
    """The id a segmenter reports: its spec, plus the image encoder's runtime when it is not PyTorch."""
    return spec if runtime == "torch" else f"{spec}+{runtime}"
