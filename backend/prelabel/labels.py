"""Labels and the text prompts that find them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LabelPrompt:
    """One output label and the phrases Grounding DINO is prompted with to find it.

    ``box_threshold`` overrides the detector-wide threshold for this label only.
    """

    name: str
    prompts: tuple[str, ...]
    box_threshold: float | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a label name must not be empty")
        prompts = tuple(p.strip() for p in self.prompts if p.strip()) or (self.name.strip(),)
        object.__setattr__(self, "prompts", prompts)
        if self.box_threshold is not None and not 0.0 <= self.box_threshold <= 1.0:
            raise ValueError(f"box_threshold of {self.name!r} must lie in [0, 1]")


def parse_labels(text: str) -> list[LabelPrompt]:
    """Parse ``"rivet=oxidized rivet|rusted bolt,crack"`` into labels.

    Labels are separated by commas; ``name=p1|p2`` gives a label its own prompts (the name itself
    otherwise); ``name@0.4`` sets a per-label box threshold.
    """
    labels = []
    for item in text.split(","):
        if not item.strip():
            continue
        head, _, prompts = item.partition("=")
        name, _, threshold = head.partition("@")
        labels.append(
            LabelPrompt(
                name=name.strip(),
                prompts=tuple(prompts.split("|")) if prompts else (),
                box_threshold=float(threshold) if threshold.strip() else None,
            )
        )
    return check_labels(labels)


def labels_from_mapping(mapping: Mapping[str, Iterable[str] | str]) -> list[LabelPrompt]:
    """Labels from ``{"rivet": ["oxidized rivet", "rusted bolt"], "crack": "crack"}``."""
    return check_labels(
        [LabelPrompt(name, (prompts,) if isinstance(prompts, str) else tuple(prompts)) for name, prompts in mapping.items()]
    )


def check_labels(labels: list[LabelPrompt]) -> list[LabelPrompt]:
    """Reject an empty label list and duplicate names."""
    if not labels:
        raise ValueError("no labels given: pass e.g. --labels 'cat,dog=puppy|dog'")
    names = [label.name for label in labels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate label names: {', '.join(duplicates)}")
    return labels
