"""Exploration: a small, bounded share of below-threshold detections shown as *candidates*, so annotators'
keep/delete on them tells the fit whether a threshold is too high (only shown regions can be judged).

The detector runs once with the cuts lowered to ``floor``; the detections are then split into the regions
shown as before (at or above their label's cut, :meth:`prelabel.pipeline.Thresholds.cuts`) and the ones below, of which
``round(share * n)`` (stochastically rounded, at most ``max_per_task``) are drawn uniformly at random, seeded
by the image, so a task always gets the same candidates. Each candidate carries ``explore_weight`` = ``n / m``,
the inverse of its chance of being shown: the fit weights candidates' judgements by it, so a sample stands for
every below-threshold detection (Horvitz-Thompson). Shown regions have weight 0 in that column (not candidates).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.regions import Regions
from prelabel.core.uncertainty import EXPLORE_WEIGHT as WEIGHT


@dataclass(frozen=True)
class Exploration:
    """How many below-threshold detections to show as candidates (``share`` 0 = off)."""

    share: float = 0.0  # the expected share of below-threshold detections (>= floor) shown as candidates
    max_per_task: int = 3  # at most this many candidates per task
    floor: float = 0.1  # the lowest detector score explored

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise PrelabelError(f"the exploration share must lie in [0, 1] (PRELABEL_EXPLORE_SHARE), got {self.share}")
        if self.max_per_task < 0:
            raise PrelabelError(f"the exploration count per task must be >= 0 (PRELABEL_EXPLORE_MAX), got "
                                f"{self.max_per_task}")
        if not 0.0 < self.floor < 1.0:
            raise PrelabelError(f"the exploration floor must lie in (0, 1) (PRELABEL_EXPLORE_FLOOR), got {self.floor}")

    @property
    def active(self) -> bool:
        return self.share > 0 and self.max_per_task > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_seed(image: np.ndarray) -> int:
    """A seed from the image's pixels (a strided sample of them): the same task gets the same candidates."""
    sample = np.ascontiguousarray(np.asarray(image)[::7, ::7])
    return int.from_bytes(hashlib.blake2b(sample.tobytes() + repr(sample.shape).encode(), digest_size=8).digest(),
                          "big")


def split_candidates(regions: Regions, cuts: np.ndarray, exploration: Exploration, seed: int,
                     max_shown: int | None = None) -> Regions:
    """The regions shown as without exploration (at most ``max_shown``), then the drawn candidates; the column
    :data:`WEIGHT` is 0 for shown regions and ``n / m`` for candidates. ``cuts``: the score each label's regions
    need to be shown (:meth:`prelabel.pipeline.Thresholds.cuts`)."""
    scores = regions.scores.astype(np.float64)
    cut = np.asarray(cuts, dtype=np.float64)[regions.label_ids] if len(regions) else np.zeros(0)
    shown_mask = scores >= cut
    shown = np.flatnonzero(shown_mask)[:max_shown]
    below = np.flatnonzero(~shown_mask & (scores >= exploration.floor))
    rng = np.random.default_rng(seed)
    drawn = min(exploration.max_per_task, int(np.floor(exploration.share * len(below) + rng.uniform())))
    chosen = np.sort(rng.choice(below, drawn, replace=False)) if drawn else np.zeros(0, dtype=np.int64)
    weight = np.zeros(len(shown) + len(chosen))
    weight[len(shown):] = len(below) / drawn if drawn else 0.0
    return regions.select(np.concatenate([shown, chosen]).astype(np.int64)).with_data(**{WEIGHT: weight})

