"""Label Studio: labeling-config parsing and Regions -> prediction results (percent coordinates)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

import numpy as np
from defusedxml import ElementTree
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from prelabel.geometry import mask_to_polygons
from prelabel.labels import LabelPrompt
from prelabel.regions import Regions

# Control tag -> result type for the shapes we predict.
OUTPUT_TAGS = {"RectangleLabels": "rectanglelabels", "PolygonLabels": "polygonlabels", "BrushLabels": "brushlabels"}
# Control tags whose smart-tool clicks/boxes arrive as interactive context.
CONTEXT_TAGS = {"KeyPointLabels": "keypointlabels", "RectangleLabels": "rectanglelabels"}


class LabelConfigError(ValueError):
    """A labeling config prelabel cannot predict for; the message tells the user what to change."""


@dataclass(frozen=True)
class Control:
    """One control tag of the config that prelabel fills: its name, type, image and labels."""

    name: str
    tag: str
    to_name: str
    labels: tuple[str, ...]

    @property
    def result_type(self) -> str:
        return OUTPUT_TAGS[self.tag]


@dataclass(frozen=True)
class LabelConfig:
    """The parts of a Label Studio labeling config that drive pre-annotation."""

    image_name: str
    image_key: str  # the task data key holding the image URL ("image" for value="$image")
    controls: tuple[Control, ...]
    prompts: tuple[LabelPrompt, ...]  # one per distinct label, in config order

    @property
    def needs_masks(self) -> bool:
        return any(c.tag in ("PolygonLabels", "BrushLabels") for c in self.controls)


def parse_label_config(xml: str, prompt_map: Mapping[str, LabelPrompt] | None = None) -> LabelConfig:
    """Parse a config (safely: no entities, no external references) into what prelabel predicts.

    A label's prompts come from, in order: ``prompt_map`` (server config), the ``predicted_values``
    attribute of its ``<Label>`` (comma-separated, as in Label Studio's own examples), its value.
    """
    if not isinstance(xml, str) or not xml.strip():
        raise LabelConfigError("the project has no labeling config")
    try:
        root = ElementTree.fromstring(xml)
    except Exception as exc:  # defusedxml raises ParseError and its own security errors
        raise LabelConfigError(f"the labeling config is not valid XML: {exc}") from exc
    images = {el.get("name"): el.get("value", "") for el in root.iter("Image") if el.get("name")}
    if not images:
        raise LabelConfigError("the labeling config has no <Image> tag; prelabel pre-labels images only")
    prompt_map = prompt_map or {}
    controls, prompts = [], {}
    for el in root.iter():
        if el.tag not in OUTPUT_TAGS:
            continue
        to_name = el.get("toName", "")
        if to_name not in images:
            raise LabelConfigError(f"<{el.tag} name={el.get('name')!r}> points at {to_name!r}, which is not an <Image>")
        labels = tuple(_labels(el, prompt_map, prompts))
        if not labels:
            raise LabelConfigError(f"<{el.tag} name={el.get('name')!r}> has no <Label> children")
        controls.append(Control(el.get("name", ""), el.tag, to_name, labels))
    if not controls:
        raise LabelConfigError(
            "the labeling config has no RectangleLabels, PolygonLabels or BrushLabels tag on an <Image>; "
            "add one so prelabel can pre-annotate"
        )
    if len({c.to_name for c in controls}) > 1:
        raise LabelConfigError("prelabel supports one <Image> per task; the config's controls point at several")
    image_name = controls[0].to_name
    value = images[image_name]
    if not value.startswith("$"):
        raise LabelConfigError(f"<Image name={image_name!r}> must take its URL from task data, e.g. value=\"$image\"")
    return LabelConfig(image_name, value[1:], tuple(controls), tuple(prompts.values()))


def _labels(el: Element, prompt_map: Mapping[str, LabelPrompt], prompts: dict[str, LabelPrompt]) -> list[str]:
    names = []
    for label in el.iter("Label"):
        name = label.get("value")
        if not name:
            continue
        names.append(name)
        if name not in prompts:
            predicted = [p for p in (label.get("predicted_values") or "").split(",") if p.strip()]
            prompts[name] = prompt_map.get(name) or LabelPrompt(name, tuple(predicted))
    return names


def regions_to_results(
    regions: Regions, config: LabelConfig, polygon_tolerance: float = 0.01, max_vertices: int = 100
) -> list[dict[str, Any]]:
    """Label Studio result items for every control tag, each region carrying a label from that tag."""
    width, height = regions.image_size
    confidence = region_confidence(regions)
    results: list[dict[str, Any]] = []
    for control in config.controls:
        for i in range(len(regions)):
            label = regions.label_names[int(regions.label_ids[i])]
            if label not in control.labels:
                continue
            value = _value(regions, i, control, polygon_tolerance, max_vertices)
            if value is None:
                continue
            value[control.result_type] = [label]
            results.append(
                {
                    "id": f"{control.name}_{i}",
                    "from_name": control.name,
                    "to_name": control.to_name,
                    "type": control.result_type,
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                    "score": round(float(confidence[i]), 4),
                    "value": value,
                }
            )
    return results


def _value(regions: Regions, i: int, control: Control, tolerance: float, max_vertices: int) -> dict[str, Any] | None:
    width, height = regions.image_size
    if control.tag == "RectangleLabels":
        x1, y1, x2, y2 = (float(v) for v in regions.boxes_xyxy[i])
        return {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                "height": 100 * (y2 - y1) / height, "rotation": 0}
    if regions.masks is None or not regions.masks[i].any():
        return None
    if control.tag == "PolygonLabels":
        polygons = mask_to_polygons(regions.masks[i], tolerance=tolerance, max_vertices=max_vertices)
        if not polygons:
            return None
        points = polygons[0] / np.array([width, height], dtype=np.float32) * 100
        return {"points": points.round(3).tolist(), "closed": True}
    return {"format": "rle", "rle": mask_to_brush_rle(regions.masks[i])}


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of a bool mask (label_studio_sdk's codec)."""
    return [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)]


def brush_rle_to_mask(rle: Sequence[int], width: int, height: int) -> np.ndarray:
    """Decode Label Studio's brush RLE into a bool ``(H, W)`` mask."""
    return decode_rle(list(rle)).reshape(height, width, 4)[:, :, 3] > 0


def region_confidence(regions: Regions) -> np.ndarray:
    """Per-region confidence shown to annotators: detector score, times SAM's IoU when masks exist."""
    if regions.mask_scores is None:
        return regions.scores
    return regions.scores * regions.mask_scores


def task_score(regions: Regions) -> float:
    """The task-level prediction score (lower = look first): the least confident region, 1.0 if none."""
    return float(region_confidence(regions).min()) if len(regions) else 1.0
