"""``model_version``: a short id of everything that shapes predictions, computable before loading models."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from prelabel.core.labels import LabelPrompt

_DIGEST_LENGTH = 10
PATTERN = re.compile(rf"prelabel(-random)?-[0-9a-f]{{{_DIGEST_LENGTH}}}")
"""Every ``model_version`` :func:`model_version` returns."""


def model_version(
    models: Mapping[str, Any],
    labels: Sequence[LabelPrompt],
    thresholds: Mapping[str, Any],
    random_weights: bool,
    learned: Mapping[str, Any] | None = None,
) -> str:
    """``prelabel-<hash>`` (``prelabel-random-<hash>`` for random weights) of the models (specs, runtime,
    dtype), the labels and their prompts, the thresholds and what was learned from feedback.

    Display settings (the review threshold) are not part of it: they change no prediction.
    """
    payload = {"models": dict(models), "labels": [asdict(label) for label in labels], "config": dict(thresholds)}
    if learned:
        payload["learned"] = dict(learned)
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:_DIGEST_LENGTH]
    return f"{'prelabel-random' if random_weights else 'prelabel'}-{digest}"
