"""Smart tools: a mask from the annotator's clicks (KeyPointLabels) and/or smart box (RectangleLabels); boxes
from an ``exemplar`` control go to :mod:`.exemplars`, video boxes to :func:`.video.propagate`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from prelabel.core.errors import BadRequest
from prelabel.core.geometry import mask_to_box
from prelabel.core.regions import Regions
from prelabel.labelstudio.client import LabelStudioAccess
from prelabel.labelstudio.config import CONTEXT_TAGS, LabelConfig
from prelabel.labelstudio.coordinates import PercentFrame
from prelabel.labelstudio.predict.exemplars import find_similar
from prelabel.labelstudio.predict.images import task_image
from prelabel.labelstudio.predict.setup import PredictorSetup
from prelabel.labelstudio.predict.video import propagate
from prelabel.labelstudio.result_items import parse_items
from prelabel.labelstudio.results import regions_to_results


def interactive(setup: PredictorSetup, task: dict[str, Any], config: LabelConfig, context: dict[str, Any],
                access: LabelStudioAccess | None, version: str) -> dict[str, Any]:
    """The answer to a smart-tool request (``version`` is the request's)."""
    if config.is_video:
        return propagate(setup, task, config, parse_items(context.get("result"), ("videorectangle",)), access,
                         version)
    items = parse_items(context.get("result"), CONTEXT_TAGS.values())
    if not items:
        raise BadRequest("interactive context holds no keypointlabels or rectanglelabels result")
    image = task_image(setup, task, config, access)
    frame = PercentFrame(image.shape[1], image.shape[0])  # the image's own size, whatever the items say
    names = [p.name for p in config.prompts]
    points, point_labels, box, label = [], [], None, None
    exemplars: dict[bool, list[np.ndarray]] = {True: [], False: []}
    for item in (replace(item, frame=frame) for item in items):
        label = label or item.label
        if item.type == "keypointlabels":
            points.append(item.point())
            point_labels.append(1 if item.is_positive else 0)
        elif item.from_name in config.exemplar_controls:
            exemplars[item.is_positive].append(item.box().astype(np.float32))
        else:
            box = item.box().astype(np.float32)
    if label is not None and label not in names:
        raise BadRequest(f"the label {label!r} is not in the labeling config ({', '.join(names)})")
    if exemplars[True] or exemplars[False]:
        return find_similar(setup, image, config, label, exemplars[True], exemplars[False])
    mask, score = setup.labeler.click(image, np.array(points, dtype=np.float32).reshape(-1, 2),
                                      np.array(point_labels, dtype=np.int64), box)
    return {"model_version": version, "score": round(score, 4), "result": mask_results(mask, score, config, label)}


def mask_results(mask: np.ndarray, score: float, config: LabelConfig, label: str | None) -> list[dict[str, Any]]:
    """The clicked mask as brush/polygon results (the smart tool itself already drew the box)."""
    height, width = mask.shape
    names = [p.name for p in config.prompts]
    region = Regions(
        image_size=(width, height), label_names=names, boxes_xyxy=mask_to_box(mask)[None],
        scores=[min(max(score, 0.0), 1.0)], label_ids=[names.index(label) if label in names else 0],
        masks=mask[None], data={"mask_score": [1.0]},
    )
    mask_controls = tuple(c for c in config.controls if c.tag != "RectangleLabels")
    return regions_to_results(region, replace(config, controls=mask_controls))
