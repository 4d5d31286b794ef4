"""Where batch images come from: a folder, a glob, a JSONL/CSV manifest or a Label Studio project."""

from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.fetch import FetchPolicy
from prelabel.core.images import load_image_file
from prelabel.labelstudio.client import LabelStudioAccess, LabelStudioClient
from prelabel.labelstudio.config import parse_label_config
from prelabel.labelstudio.task_images import TaskImageFetcher

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
MANIFEST_EXTENSIONS = frozenset({".jsonl", ".csv"})
MANIFEST_KEYS = ("image", "path", "url")
LS_PREFIX = "ls:"


class SourceError(PrelabelError):
    """A batch source that names no images prelabel can read."""


@dataclass(frozen=True)
class ImageItem:
    """One image to pre-label: a unique sort key, a local path or URL, and its Label Studio task if any."""

    key: str
    uri: str
    task_id: int | None = None

    @property
    def is_local(self) -> bool:
        return urlparse(self.uri).scheme in ("", "file") or Path(self.uri).is_absolute()


def resolve_source(source: str, access: LabelStudioAccess | None = None) -> list[ImageItem]:
    """The images of ``source``, sorted by key, each once.

    ``source`` is ``ls:PROJECT_ID``, a folder (searched recursively), a ``.jsonl``/``.csv`` manifest
    (relative paths are relative to the manifest) or a glob pattern (``**`` recurses).
    """
    if source.startswith(LS_PREFIX):
        items = project_items(project_client(access), project_of(source))
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


def project_of(source: str) -> int:
    """The project id of an ``ls:PROJECT_ID`` source."""
    project = source[len(LS_PREFIX):]
    if not project.isdigit():
        raise SourceError(f"{source} is not a project id; use e.g. ls:3")
    return int(project)


def project_client(access: LabelStudioAccess | None) -> LabelStudioClient:
    """The client of the configured Label Studio, which an ``ls:`` source needs."""
    if access is None or not access.url or not access.api_key:
        raise SourceError("a Label Studio project needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
    return LabelStudioClient.for_access(access)


def project_items(client: LabelStudioClient, project: int) -> list[ImageItem]:
    """The image of every task of a project (the data key comes from its labeling config)."""
    image_key = parse_label_config(client.label_config(project)).image_key
    return [ImageItem(f"task-{task.id:09d}", str(task.data.get(image_key, "")), task.id)
            for task in client.sdk.tasks.list(project=project)]


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
    """Reads local files and fetches URLs (Label Studio ones with its authentication) into RGB arrays.

    The URLs are the ones the person running the batch chose, so any host is fetched, private networks
    included (the server's allowlist guards requests from others); size, time and pixel limits still apply.
    """

    def __init__(self, max_pixels: int, access: LabelStudioAccess | None = None, timeout_s: float = 20.0) -> None:
        self.max_pixels = max_pixels
        self.access = access
        self.fetcher = TaskImageFetcher(timeout_s=timeout_s, max_pixels=max_pixels,
                                        policy=FetchPolicy(allowed_hosts=("*",), allow_private=True))

    def load(self, item: ImageItem) -> np.ndarray:
        """The image; raises a ``ValueError`` (ImageError / ImageFetchError) with a clear message."""
        if item.task_id is None and item.is_local:
            return load_image_file(item.uri.removeprefix("file://"), self.max_pixels)
        return self.fetcher.fetch(item.uri, self.access, item.task_id)
