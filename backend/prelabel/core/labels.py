"""Labels and the text prompts that find them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.parsing import finite

log = logging.getLogger(__name__)

GRAMMAR = ("labels are comma-separated NAME, NAME=PROMPT|PROMPT and NAME@THRESHOLD items; the threshold may "
           "also end the prompts (NAME=PROMPT|PROMPT@THRESHOLD), e.g. 'rivet=oxidized rivet|rusted bolt@0.3,crack'")


class LabelError(PrelabelError):
    """A label list prelabel cannot parse; the message shows the accepted grammar."""


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
            raise LabelError(f"a label name must not be empty. {GRAMMAR}")
        prompts = tuple(p.strip() for p in self.prompts if p.strip()) or (self.name.strip(),)
        object.__setattr__(self, "prompts", prompts)
        if self.box_threshold is not None and not 0.0 <= self.box_threshold <= 1.0:
            raise LabelError(f"box_threshold of {self.name!r} must lie in [0, 1]")


def box_cuts(labels: Sequence[LabelPrompt], default: float) -> np.ndarray:
    """Each label's score cut: its own ``box_threshold``, or ``default``. The one place this rule is written."""
    return np.array([default if label.box_threshold is None else label.box_threshold for label in labels],
                    dtype=np.float64)


def parse_labels(text: str) -> list[LabelPrompt]:
    """Parse ``"rivet=oxidized rivet|rusted bolt@0.3,crack@0.2,scratch"`` into labels.

    Labels are separated by commas; ``name=p1|p2`` gives a label its own prompts (the name itself
    otherwise); a per-label box threshold follows ``@``, after the name or after the prompts (not both).
    A ``@`` anywhere else, or a threshold that is not a number in [0, 1], is an error naming the label.
    """
    labels = []
    for item in text.split(","):
        if not item.strip():
            continue
        head, has_prompts, tail = item.partition("=")
        name, _, head_threshold = head.partition("@")
        prompts = tail.split("|") if has_prompts else []
        tail_threshold = ""
        if prompts and "@" in prompts[-1]:
            prompts[-1], _, tail_threshold = prompts[-1].rpartition("@")
        name = name.strip()
        if head_threshold.strip() and tail_threshold.strip():
            raise LabelError(f"label {name!r} has two thresholds ({head_threshold.strip()} and "
                             f"{tail_threshold.strip()}); give one. {GRAMMAR}")
        if any("@" in prompt for prompt in prompts) or "=" in tail:
            raise LabelError(f"label {name!r}: cannot parse {item.strip()!r}. {GRAMMAR}")
        if has_prompts and not all(prompt.strip() for prompt in prompts):
            raise LabelError(f"label {name!r}: an empty prompt in {item.strip()!r} (after '=' or between '|'); "
                             f"give each prompt text, or drop '=' to prompt with the name. {GRAMMAR}")
        for mark, meaning in ((";", "labels are separated by ','"), ("|", "prompts follow '=' and are separated by '|'")):
            if mark in name:
                log.warning("label %r contains %r: %s (e.g. --labels 'cat,dog=puppy|dog')", name, mark, meaning)
        labels.append(LabelPrompt(name, tuple(prompts), _threshold(name, head_threshold or tail_threshold)))
    return check_labels(labels)


def _threshold(name: str, text: str) -> float | None:
    if not text.strip():
        return None
    value = finite(text)
    if value is None:
        raise LabelError(f"label {name!r}: threshold {text.strip()!r} is not a number in [0, 1]. {GRAMMAR}")
    if not 0.0 <= value <= 1.0:
        raise LabelError(f"label {name!r}: threshold {value:g} must lie in [0, 1]. {GRAMMAR}")
    return value


def phrase_queries(labels: Sequence[LabelPrompt]) -> tuple[list[str], list[int]]:
    """Every phrase of every label, lower-cased, as one query, and the label id of each query (for detectors
    that score one text query per phrase, such as OWLv2 and OmDet-Turbo)."""
    pairs = [(phrase.lower(), label_id) for label_id, label in enumerate(labels) for phrase in label.prompts]
    return [text for text, _ in pairs], [owner for _, owner in pairs]


def labels_from_mapping(mapping: Mapping[str, Iterable[str] | str]) -> list[LabelPrompt]:
    """Labels from ``{"rivet": ["oxidized rivet", "rusted bolt"], "crack": "crack"}``."""
    return check_labels(
        [LabelPrompt(name, (prompts,) if isinstance(prompts, str) else tuple(prompts)) for name, prompts in mapping.items()]
    )


def check_labels(labels: list[LabelPrompt]) -> list[LabelPrompt]:
    """Reject an empty label list and duplicate names."""
    if not labels:
        raise LabelError("no labels given: pass e.g. --labels 'cat,dog=puppy|dog' (or set PRELABEL_LABELS)")
    names = [label.name for label in labels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LabelError(f"duplicate label names: {', '.join(duplicates)}")
    return labels
