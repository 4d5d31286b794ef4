"""The QA report: a JSON document and a self-contained HTML page with overlay thumbnails."""

from __future__ import annotations

import base64
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from prelabel.core.geometry import clip_boxes
from prelabel.core.images import ImageError, load_image_file
from prelabel.core.regions import Regions
from prelabel.core.viz import draw_regions
from prelabel.qa.checks import KINDS, Issue
from prelabel.qa.dataset import Item

THUMBNAIL_SIDE = 360


def report_document(source: str, kind: str, items: list[Item], issues: list[Issue], consensus: dict[str, float],
                    gold: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Counts by kind, every issue, per-image consensus and gold scores."""
    counts = Counter(issue.kind for issue in issues)
    return {
        "file": source,
        "format": kind,
        "images": len(items),
        "shapes": sum(len(s) for item in items for s in item.annotators.values()),
        "counts": {k: counts.get(k, 0) for k in KINDS},
        "issues": [issue.to_dict() for issue in issues],
        "consensus": consensus,
        "gold": gold,
    }


def html_report(document: dict[str, Any], items: list[Item], issues: list[Issue], image_root: Path | None) -> str:
    """One page: the counts, then each flagged image with an overlay thumbnail and its issues."""
    by_key: dict[str, list[Issue]] = {}
    for issue in issues:
        by_key.setdefault(issue.key, []).append(issue)
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{n}</td></tr>" for k, n in document["counts"].items())
    sections = []
    for item in items:
        if item.key not in by_key:
            continue
        flagged = {ref for issue in by_key[item.key] for ref in issue.refs}
        listing = "".join(f"<li><b>{escape(i.kind)}</b> [{escape(i.annotator)}] {escape(i.message)}"
                          f"{' &mdash; ' + escape(', '.join(i.refs)) if i.refs else ''}</li>" for i in by_key[item.key])
        sections.append(f"<section><h3>{escape(item.key)}</h3>{_thumbnail(item, flagged, image_root)}"
                        f"<ul>{listing}</ul></section>")
    consensus = "".join(f"<tr><td>{escape(k)}</td><td>{v:.2f}</td></tr>" for k, v in document["consensus"].items())
    gold = "".join(f"<tr><td>{escape(a)}</td><td>{s['precision']:.2f}</td><td>{s['recall']:.2f}</td>"
                   f"<td>{s['f1']:.2f}</td></tr>" for a, s in document["gold"].items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>prelabel QA</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 8px}section{border-top:1px solid #ddd;margin-top:1em}img{border:1px solid #888}</style>"
        f"</head><body><h1>QA of {escape(document['file'])}</h1>"
        f"<p>{document['format']}: {document['images']} images, {document['shapes']} shapes, "
        f"{len(issues)} issues on {len(by_key)} images. Flagged shapes are drawn in red.</p>"
        f"<table><tr><th>check</th><th>issues</th></tr>{rows}</table>"
        + (f"<h2>Annotator consensus</h2><table><tr><th>image</th><th>agreement</th></tr>{consensus}</table>"
           if consensus else "")
        + (f"<h2>Gold set</h2><table><tr><th>annotator</th><th>precision</th><th>recall</th><th>F1</th></tr>"
           f"{gold}</table>" if gold else "")
        + "<h2>Flagged images</h2>" + "".join(sections) + "</body></html>\n"
    )


def _thumbnail(item: Item, flagged: set[str], image_root: Path | None) -> str:
    """An inline PNG of the image (or a grey canvas when it cannot be read) with every shape drawn by label
    colour and the flagged ones outlined in red."""
    shapes = [s for group in item.annotators.values() for s in group]
    width = item.width or int(max([s.box_xyxy[2] for s in shapes] + [64]))
    height = item.height or int(max([s.box_xyxy[3] for s in shapes] + [64]))
    canvas = _background(item, width, height, image_root)
    labels = tuple(sorted({s.label for s in shapes}))
    regions = Regions((width, height), labels, clip_boxes(np.array([s.box_xyxy for s in shapes]), width, height),
                      np.ones(len(shapes)), np.array([labels.index(s.label) for s in shapes]))
    picture = draw_regions(canvas, regions)
    for shape in shapes:
        if shape.ref in flagged:
            x1, y1, x2, y2 = (int(round(v)) for v in clip_boxes(shape.box_xyxy, width, height)[0])
            cv2.rectangle(picture, (x1, y1), (x2, y2), (255, 0, 0), 2)
    scale = THUMBNAIL_SIDE / max(width, height)
    if scale < 1:
        picture = cv2.resize(picture, (max(1, round(width * scale)), max(1, round(height * scale))),
                             interpolation=cv2.INTER_AREA)
    _, png = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return f"<img alt='{escape(item.key)}' src='data:image/png;base64,{base64.b64encode(png.tobytes()).decode()}'>"


def _background(item: Item, width: int, height: int, image_root: Path | None) -> np.ndarray:
    candidates = [Path(item.image)] + ([image_root / item.image] if image_root else [])
    for path in candidates:
        if path.is_file():
            try:
                image = load_image_file(path)
            except ImageError:
                break
            if image.shape[:2] == (height, width):
                return image
    return np.full((height, width, 3), 96, dtype=np.uint8)
