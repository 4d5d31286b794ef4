"""The Ray Data engine: the same per-image pipeline in an actor pool, one Labeler per actor.

Items are read into a Ray Dataset, ``map_batches`` runs them through actors (CPU or GPU each), and the
driver streams finished records into the checkpoint, so resume works exactly as with the local engine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from prelabel.batch.checkpoint import Checkpoint
from prelabel.batch.records import ImageItem
from prelabel.batch.runner import BatchOptions, label_item, progress
from prelabel.batch.sources import ImageLoader
from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings


@dataclass(frozen=True)
class RayResources:
    """Where and how wide to run: ``address`` None starts a local Ray, "auto" or ``ray://`` joins a cluster."""

    address: str | None = None
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    local_cpus: int | None = None  # CPUs of a Ray started here (default: all)


class LabelerActor:
    """A Ray Data actor: builds its Labeler once, then labels batches of serialised items."""

    def __init__(self, settings: Settings, labels: Sequence[LabelPrompt], options: BatchOptions, threads: int) -> None:
        torch.set_num_threads(max(1, threads))
        self.labeler = build_labeler(settings)
        self.labels = list(labels)
        self.options = options
        self.loader = ImageLoader(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [
            json.dumps(label_item(self.labeler, self.labels, self.options, ImageItem(**json.loads(item)),
                                  self.loader.load))
            for item in batch["item"]
        ]
        return {"record": np.array(records, dtype=object)}


def run_ray(
    settings: Settings, labels: Sequence[LabelPrompt], options: BatchOptions, items: Sequence[ImageItem],
    checkpoint: Checkpoint, resources: RayResources,
) -> None:
    """Label ``items`` on Ray and append each finished record to ``checkpoint`` as it arrives."""
    try:
        import ray
    except ImportError as exc:
        raise PrelabelError("--engine ray needs the ray extra: pip install 'prelabel[ray]'") from exc
    if not ray.is_initialized():
        init: dict[str, Any] = {"address": resources.address, "include_dashboard": False,
                                "log_to_driver": False}
        if resources.address is None and resources.local_cpus:
            init["num_cpus"] = resources.local_cpus
        ray.init(**init)
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = ray.data.from_items([{"item": json.dumps(asdict(item))} for item in items])
    dataset = dataset.map_batches(
        LabelerActor,
        fn_constructor_kwargs={"settings": settings, "labels": list(labels), "options": options,
                               "threads": int(resources.cpus_per_actor)},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=resources.actors),
        num_cpus=resources.cpus_per_actor,
        num_gpus=resources.gpus_per_actor,
    )
    with progress(len(items), f"pre-labeling on Ray ({resources.actors} actors)") as bar:
        for row in dataset.iter_rows():
            checkpoint.append(json.loads(row["record"]))
            bar.update()
