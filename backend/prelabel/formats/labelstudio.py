"""Label Studio: labeling-config parsing and Regions -> prediction results (percent coordinates)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

import numpy as np
from defusedxml import ElementTree
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from prelabel.geometry import mask_to_box, mask_to_polygons, polygon_to_mask
from prelabel.labels import LabelPrompt
from prelabel.regions import Regions
from prelabel.uncertainty import feature_dict, region_confidence

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
    regions: Regions,
    config: LabelConfig,
    review_threshold: float = 0.0,
    polygon_tolerance: float = 0.01,
    max_vertices: int = 100,
) -> list[dict[str, Any]]:
    """Label Studio result items for every control tag, each region carrying a label from that tag.

    Each item's ``score`` is the region's confidence; regions below ``review_threshold`` carry the region
    note (``meta.text``) "prelabel: review", which annotators see and search in the region list. The
    ``prelabel`` key keeps the region's uncertainty signals, so feedback from the annotation that started
    from this prediction can be learned from (Label Studio stores prediction results verbatim).
    """
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
            item: dict[str, Any] = {
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
            if confidence[i] < review_threshold:
                item["meta"] = {"text": [f"{REVIEW_NOTE} (confidence {confidence[i]:.2f})"]}
            if regions.features is not None:
                item["prelabel"] = {"region": i, "features": feature_dict(regions.features[i])}
            results.append(item)
    return results


REVIEW_NOTE = "prelabel: review"


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


@dataclass(frozen=True)
class Shape:
    """One Label Studio result item read back in pixels: a box, and a mask for polygons and brushes."""

    from_name: str
    label: str
    image_size: tuple[int, int]  # (width, height) of the image the item was drawn on
    box_xyxy: np.ndarray
    mask: np.ndarray | None
    score: float | None
    features: dict[str, float] | None  # the ``prelabel`` signals when prelabel made the item


def result_shapes(results: Sequence[Any]) -> list[Shape]:
    """The rectangle, polygon and brush items of a prediction's or annotation's ``result`` list.

    Other item types (choices, keypoints, relations) are skipped; a malformed shape item raises
    :class:`ValueError` naming the item.
    """
    shapes = []
    for item in results:
        if not isinstance(item, dict) or item.get("type") not in OUTPUT_TAGS.values():
            continue
        try:
            shapes.append(_shape(item))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"result item {item.get('id', '?')!r} ({item.get('type')}) is malformed: {exc}") from exc
    return shapes


def _shape(item: dict[str, Any]) -> Shape:
    width, height = int(item["original_width"]), int(item["original_height"])
    if width <= 0 or height <= 0:
        raise ValueError("original_width and original_height must be positive")
    value, kind = item["value"], item["type"]
    label = str(value[kind][0])
    mask = None
    if kind == "rectanglelabels":
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
        theta = np.deg2rad(float(value.get("rotation") or 0))  # Label Studio rotates around (x, y)
        rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        corners = (corners * [width / 100, height / 100]) @ rotation.T + [x * width / 100, y * height / 100]
        box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
    elif kind == "polygonlabels":
        points = np.asarray(value["points"], dtype=np.float64).reshape(-1, 2) * [width / 100, height / 100]
        mask = polygon_to_mask(points, width, height)
        box = np.concatenate([points.min(axis=0), points.max(axis=0)])
    else:
        mask = brush_rle_to_mask(value["rle"], width, height)
        box = mask_to_box(mask)
    box = np.clip(box, 0, [width, height, width, height]).astype(np.float32)
    extra = item.get("prelabel")
    features = extra.get("features") if isinstance(extra, dict) else None
    score = item.get("score")
    return Shape(str(item.get("from_name", "")), label, (width, height), box, mask, None if score is None else float(score),
                 features if isinstance(features, dict) else None)
