"""Order tasks for review: least confident prediction first, optionally spread over different-looking tasks."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.shapes import Shape
from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.result_items import (
    newest,
    our_newest_prediction,
    parse_items,
    result_shapes,
    task_predictions,
)
from prelabel.labelstudio.results import CANDIDATE_NOTE

GRID = 4  # region centres are histogrammed on a GRID x GRID grid per label for the diversity descriptor


@dataclass(frozen=True)
class RankedTask:
    """One task in review order."""

    rank: int
    task: int | str  # the task's id, else its position in the file (tasks JSON ready to import has no ids)
    score: float | None  # the prediction's score: lower = look first; None = no prediction
    regions: int
    flagged: bool  # score below the review threshold
    image: str


def prediction_of(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's newest prelabel prediction (else its newest prediction of any model)."""
    return our_newest_prediction(task) or newest(task_predictions(task))


def prediction_score(prediction: dict[str, Any] | None) -> float | None:
    """A prediction's ``score``, else its least confident region's, else None."""
    if prediction is None:
        return None
    if prediction.get("score") is not None:
        return float(prediction["score"])
    scores = [item.score for item in parse_items(prediction.get("result"), types=None) if item.score is not None]
    return min(scores) if scores else None


def descriptor(shapes: Sequence[Shape], labels: Sequence[str]) -> np.ndarray:
    """Where which labels were predicted: per label, a GRID x GRID histogram of region centres, unit length."""
    vector = np.zeros((len(labels), GRID, GRID))
    index = {label: i for i, label in enumerate(labels)}
    for shape in shapes:
        width, height = shape.image_size
        cx = (shape.box_xyxy[0] + shape.box_xyxy[2]) / 2 / width
        cy = (shape.box_xyxy[1] + shape.box_xyxy[3]) / 2 / height
        vector[index[shape.label], min(int(cy * GRID), GRID - 1), min(int(cx * GRID), GRID - 1)] += 1
    flat = vector.ravel()
    norm = np.linalg.norm(flat)
    return flat / norm if norm else flat


def diverse_order(descriptors: np.ndarray, max_similarity: float) -> list[int]:
    """Greedy: walk the list in order and postpone an item whose cosine similarity to one already taken
    exceeds ``max_similarity``; postponed items follow, in the same way, after the first pass."""
    remaining, order = list(range(len(descriptors))), []
    while remaining:
        taken: list[int] = []
        postponed = []
        for i in remaining:
            if taken and float(np.max(descriptors[taken] @ descriptors[i])) > max_similarity:
                postponed.append(i)
            else:
                taken.append(i)
        order += taken
        remaining = postponed
    return order


def rank_tasks(
    tasks: Sequence[dict[str, Any]], review_threshold: float = 0.45, max_similarity: float | None = None
) -> list[RankedTask]:
    """Tasks by ascending prediction score (tasks without a prediction last), optionally diversified."""
    rows = []
    for position, task in enumerate(tasks):
        prediction = prediction_of(task)
        score = prediction_score(prediction)
        results = (prediction or {}).get("result") or []
        image = next((str(v) for v in (task.get("data") or {}).values() if isinstance(v, str)), "")
        rows.append((score is None, score if score is not None else 0.0, position, task, results, image))
    rows.sort(key=lambda row: row[:3])
    order = list(range(len(rows)))
    predicted = sum(not row[0] for row in rows)  # tasks without a prediction stay last
    if max_similarity is not None and predicted:
        shapes = [result_shapes(row[4]) for row in rows[:predicted]]
        labels = sorted({s.label for task_shapes in shapes for s in task_shapes})
        vectors = np.stack([descriptor(s, labels) for s in shapes])
        order = diverse_order(vectors, max_similarity) + order[predicted:]
    ranked = []
    for rank, i in enumerate(order, start=1):
        missing, score, position, task, results, image = rows[i]
        value = None if missing else score
        ranked.append(RankedTask(rank, task.get("id", position), value, len(results),
                                 value is not None and value < review_threshold, image))
    return ranked


def load_tasks(source: Path) -> list[dict[str, Any]]:
    """Tasks with predictions from a Label Studio tasks JSON file, or from every such file in a folder."""
    files = sorted(source.rglob("*.json")) if source.is_dir() else [source]
    tasks: list[dict[str, Any]] = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PrelabelError(f"{path} is not valid JSON: {exc}") from exc
        if isinstance(data, list) and all(isinstance(t, dict) and "data" in t for t in data):
            tasks += data
    if not tasks:
        raise PrelabelError(f"no Label Studio tasks (a JSON list of {{'data': ..., 'predictions': ...}}) in {source}")
    return tasks


def write_ranking(ranked: Sequence[RankedTask], path: Path) -> None:
    """Write the ranking as CSV or JSON, by the file's extension."""
    rows = [asdict(r) for r in ranked]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["rank"])
        writer.writeheader()
        writer.writerows(rows)


# What a reviewer needs in a review tab: the task, its image, the score it is sorted by, and who did what.
REVIEW_COLUMNS = ("tasks:id", "tasks:predictions_score", "tasks:total_annotations", "tasks:annotators")


def hidden_columns(client: LabelStudioClient, project: int) -> dict[str, list[str]]:
    """Every Data Manager column of the project but the task data (the image) and :data:`REVIEW_COLUMNS`, in
    the ``hiddenColumns`` form of a view (keys as Label Studio builds them: ``tasks:[data.]<id>``)."""
    columns = client.call("GET", "/api/dm/columns", params={"project": project}).get("columns", [])
    keys = [f"tasks:{'data.' if c.get('parent') == 'data' else ''}{c['id']}" for c in columns
            if c.get("target", "tasks") == "tasks" and c.get("id") != "data"]
    hidden = [key for key in keys if key not in REVIEW_COLUMNS and not key.startswith("tasks:data.")]
    return {"explore": hidden, "labeling": hidden}


def save_review_views(client: LabelStudioClient, project: int, review_threshold: float) -> dict[str, int]:
    """Data Manager tabs: every task by ascending prediction score, the tasks below the review threshold, and
    the tasks whose predictions hold exploration candidates ("prelabel: candidate" regions), each showing only
    the columns a reviewer needs (the image thumbnail first).

    Label Studio computes the score column from predictions of the project's ``model_version``, which the
    backend keeps pointed at its own version.
    """
    ordering = {"ordering": ["tasks:predictions_score"], "hiddenColumns": hidden_columns(client, project)}
    below = {"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:predictions_score", "operator": "less", "type": "Number", "value": review_threshold},
    ]}}
    # Label Studio filters "Prediction results" by substring of the stored result JSON (cast to text): the
    # candidates' region note is such a substring, whatever the JSON's spacing.
    candidates = {"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:predictions_results", "operator": "contains", "type": "String",
         "value": CANDIDATE_NOTE},
    ]}}
    return {
        "most uncertain first": client.save_view(project, "prelabel: most uncertain first", ordering),
        "needs review": client.save_view(project, f"prelabel: needs review (< {review_threshold:g})",
                                         {**ordering, **below}),
        "exploration candidates": client.save_view(project, CANDIDATE_TAB, {**ordering, **candidates}),
    }


CANDIDATE_TAB = "prelabel: exploration candidates"
