"""Where batch images come from (a folder, a glob, a JSONL/CSV manifest or a Label Studio project), how they are
read, and, for a project, how its predictions go back to it."""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from prelabel.batch.records import ImageItem, record_regions
from prelabel.core.errors import PrelabelError
from prelabel.core.images import load_image_file
from prelabel.core.labels import LabelPrompt
from prelabel.labelstudio.project import LabelStudioProject, TaskImages
from prelabel.settings import Settings

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
MANIFEST_EXTENSIONS = frozenset({".jsonl", ".csv"})
MANIFEST_KEYS = ("image", "path", "url")
LS_PREFIX = "ls:"
PUSHED = "labelstudio_pushed.txt"


class SourceError(PrelabelError):
    """A batch source that names no images prelabel can read."""


def open_project(source: str, settings: Settings, labels: Sequence[LabelPrompt]) -> LabelStudioProject | None:
    """The Label Studio project of an ``ls:PROJECT_ID`` source, else None."""
    if not source.startswith(LS_PREFIX):
        return None
    project = source[len(LS_PREFIX):]
    if not project.isdigit():
        raise SourceError(f"{source} is not a project id; use e.g. ls:3")
    return LabelStudioProject.open(settings, int(project), labels)


def resolve_source(source: str, project: LabelStudioProject | None = None) -> list[ImageItem]:
    """The images of ``source``, sorted by key, each once.

    ``source`` is ``ls:PROJECT_ID`` (its ``project``, see :func:`open_project`), a folder (searched recursively), a
    ``.jsonl``/``.csv`` manifest (relative paths are relative to the manifest) or a glob pattern (``**`` recurses).
    """
    if project is not None:
        items = [ImageItem(f"task-{task_id:09d}", url, task_id) for task_id, url in project.images()]
    elif Path(source).is_dir():
        root = Path(source)
        items = [ImageItem(p.relative_to(root).as_posix(), str(p)) for p in root.rglob("*") if _is_image(p)]
    elif Path(source).is_file() and Path(source).suffix.lower() in MANIFEST_EXTENSIONS:
        items = manifest_items(Path(source))
    elif glob.has_magic(source):
        items = [ImageItem(Path(p).as_posix(), p) for p in glob.glob(source, recursive=True) if _is_image(Path(p))]
    elif not Path(source).exists():
        raise SourceError(f"{source} does not exist; pass a folder, a .jsonl/.csv manifest, a glob pattern or "
                          f"ls:PROJECT_ID")
    else:
        raise SourceError(f"{source} is not a folder, a .jsonl/.csv manifest, a glob pattern or ls:PROJECT_ID")
    unique = {item.key: item for item in items}
    if not unique:
        raise SourceError(f"{source} holds no images (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return [unique[key] for key in sorted(unique)]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def manifest_items(path: Path) -> list[ImageItem]:
    """Entries of a JSONL manifest (one string, or an object with image/path/url, per line) or a CSV
    manifest with an ``image``, ``path`` or ``url`` column."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows: list[Any] = list(csv.DictReader(handle))
    else:
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                rows.extend([json.loads(line)] if line.strip() else [])
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path} line {number} is not JSON: {exc.msg}") from exc
    items = []
    for number, row in enumerate(rows, start=1):
        entry = row if isinstance(row, str) else next((row[k] for k in MANIFEST_KEYS if row.get(k)), None)
        if not entry:
            raise SourceError(f"{path} entry {number} has no {'/'.join(MANIFEST_KEYS)} field")
        local = urlparse(entry).scheme in ("", "file")
        uri = str(path.parent / entry) if local and not Path(entry).is_absolute() else entry
        items.append(ImageItem(entry, uri))
    return items


class ImageLoader:
    """Reads local files and fetches URLs (Label Studio ones with its authentication) into RGB arrays."""

    def __init__(self, settings: Settings) -> None:
        self.max_pixels = settings.max_pixels
        self.remote = TaskImages(settings)

    def load(self, item: ImageItem) -> np.ndarray:
        """The image; raises a ``ValueError`` (ImageError / ImageFetchError) with a clear message."""
        if item.task_id is None and item.is_local:
            return load_image_file(item.uri.removeprefix("file://"), self.max_pixels)
        return self.remote.fetch(item.uri, item.task_id)


def push_predictions(project: LabelStudioProject, records: dict[str, dict[str, Any]], out_dir: Path,
                     review_threshold: float) -> int:
    """Store each labeled task's prediction once (tasks already pushed are listed in ``out_dir/PUSHED``), then
    point the project's model_version at it so the Data Manager sorts by its score."""
    log_path = out_dir / PUSHED
    pushed = set(log_path.read_text(encoding="utf-8").split()) if log_path.exists() else set()
    done = [r for key, r in sorted(records.items()) if "error" not in r and key not in pushed]
    with log_path.open("a", encoding="utf-8") as log_file:
        for record in done:
            project.push(record["task_id"], record_regions(record), record["model_version"], review_threshold)
            log_file.write(record["key"] + "\n")
            log_file.flush()
    versions = {r["model_version"] for r in records.values() if "error" not in r}
    if len(versions) == 1:
        project.use_model_version(versions.pop())
    return len(done)
