"""A persistent store of image embeddings beside the in-memory LRU: the first click on a pre-labeled image skips
the image encoder in any worker, replica or restarted server.

Entries are safetensors files (no pickle: a hostile store cannot run code) on a local folder or any fsspec URL (a
shared volume, ``s3://``, ``gs://``), under a folder named by the segmenter's identity (weights digest, runtime,
dtype, input size), and carry that identity again inside: an entry of another model can never be read. Tensors are
stored as fp16 (half the bytes; the click masks it gives are measured against fp32). Writes are atomic (a temporary
file renamed into place; object stores write whole objects), several processes may read and write at once, and a
byte budget evicts the least recently used entries. A store that cannot be read or written is a miss or a skipped
write with one log line: it never changes an answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import fsspec
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

log = logging.getLogger(__name__)

FORMAT = "prelabel-embedding/1"
SUFFIX = ".safetensors"
LIST_EVERY = 64  # writes between listings of the store when this process's own count says it fits


@dataclass(frozen=True)
class StoredEmbedding:
    """What one entry holds: the embedding's tensors (in the segmenter's dtype) and its two image sizes."""

    tensors: tuple[torch.Tensor, ...]
    original_size: tuple[int, int]
    reshaped_size: tuple[int, int]
    as_tuple: bool = True  # False: the segmenter's embedding is one tensor, not a tuple of them


class EmbeddingStore:
    """Embeddings of one segmenter (``identity``) under ``url``, within ``budget_bytes``.

    ``shapes`` are the tensor shapes an entry must have (``None``: learned from the first entry written here);
    ``hits``, ``misses``, ``writes`` and ``errors`` count for the metrics.
    """

    def __init__(self, url: str, identity: str, budget_bytes: int,
                 shapes: Sequence[tuple[int, ...]] | None = None) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(os.path.expanduser(url) if "://" not in url else url)
        self.identity = identity
        self.root = f"{root.rstrip('/')}/{hashlib.sha256(identity.encode()).hexdigest()[:24]}"
        self.budget_bytes = budget_bytes
        self.shapes = tuple(tuple(s) for s in shapes) if shapes is not None else None
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.hits = self.misses = self.writes = self.errors = 0
        self._lock = threading.Lock()
        self._estimate: int | None = None  # bytes found by the last listing, plus this process's writes since
        self._unlisted = 0  # writes since that listing

    def path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}{SUFFIX}"

    def get(self, key: str) -> StoredEmbedding | None:
        """The stored embedding of ``key``, or ``None`` (absent, unreadable, corrupt, another model's, wrong shape:
        each logged once per read, never raised)."""
        path = self.path(key)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return self._count(hit=False)
        except OSError as exc:
            log.warning("embedding store: cannot read %s (%s): encoding instead", path, exc)
            return self._count(hit=False, error=True)
        try:
            entry = self._decode(data)
        except Exception as exc:  # a corrupt or foreign file: safetensors, torch and int() raise their own types
            log.warning("embedding store: ignoring %s (%s: %s): encoding instead", path, type(exc).__name__, exc)
            return self._count(hit=False, error=True)
        if self.local:
            try:
                os.utime(path)  # least recently *used*: a read counts
            except OSError:
                pass
        self._count(hit=True)
        return entry

    def put(self, key: str, embedding: StoredEmbedding) -> None:
        """Store ``embedding`` under ``key`` (fp16), then evict past the budget; a failure is logged and skipped."""
        path = self.path(key)
        tensors = {f"t{i}": t.detach().to("cpu", torch.float16).contiguous() for i, t in enumerate(embedding.tensors)}
        metadata = {"format": FORMAT, "identity": self.identity, "count": str(len(tensors)),
                    "original_size": ",".join(map(str, embedding.original_size)),
                    "reshaped_size": ",".join(map(str, embedding.reshaped_size)),
                    "as_tuple": str(embedding.as_tuple).lower()}
        data = save_tensors(tensors, metadata)
        if len(data) > self.budget_bytes:
            return
        try:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            if self.local:  # a temporary file renamed into place: readers never see half an entry
                temporary = f"{path}.{uuid.uuid4().hex}.tmp"
                with open(temporary, "wb") as handle:
                    handle.write(data)
                os.replace(temporary, path)
            else:  # object stores write whole objects
                self.fs.pipe_file(path, data)
        except OSError as exc:
            log.warning("embedding store: cannot write %s (%s): the embedding stays in memory only", path, exc)
            with self._lock:
                self.errors += 1
            if self.local:
                self._remove(f"{path}.*.tmp")
            return
        with self._lock:
            self.writes += 1
            if self.shapes is None:
                self.shapes = tuple(tuple(t.shape) for t in embedding.tensors)
            self._unlisted += 1
            if self._estimate is not None:
                self._estimate += len(data)
            listing_due = self._estimate is None or self._estimate > self.budget_bytes or self._unlisted >= LIST_EVERY
        if listing_due:  # a listing costs a request per folder on an object store: not on every write
            self.evict()

    def evict(self) -> None:
        """Remove the least recently used entries until the store fits its budget (listing the whole store)."""
        try:
            entries = self.fs.find(self.root, detail=True)
        except OSError as exc:
            log.warning("embedding store: cannot list %s (%s): nothing evicted", self.root, exc)
            return
        files = [(info.get("mtime") or _timestamp(info), name, int(info.get("size") or 0))
                 for name, info in entries.items() if name.endswith(SUFFIX)]
        total = sum(size for _, _, size in files)
        for _, name, size in sorted(files):
            if total <= self.budget_bytes:
                break
            self._remove(name)
            total -= size
        with self._lock:
            self._estimate, self._unlisted = total, 0

    def _decode(self, data: bytes) -> StoredEmbedding:
        tensors = load_tensors(data)
        metadata = _metadata(data)
        if metadata.get("format") != FORMAT or metadata.get("identity") != self.identity:
            raise ValueError(f"an entry of {metadata.get('identity', 'an unknown model')!r}, not of this segmenter")
        count = int(metadata["count"])
        ordered = tuple(tensors[f"t{i}"] for i in range(count))
        if len(tensors) != count or (self.shapes is not None and tuple(tuple(t.shape) for t in ordered) != self.shapes):
            raise ValueError(f"tensor shapes {[tuple(t.shape) for t in ordered]}, expected {self.shapes}")
        # fp16 values sum in fp32 without overflow, so the sum is finite exactly when every value is (25x faster
        # than an element-wise check: a first click waits for it).
        if not all(torch.isfinite(t.sum(dtype=torch.float32)) for t in ordered):
            raise ValueError("non-finite values")
        original = tuple(int(v) for v in metadata["original_size"].split(","))
        reshaped = tuple(int(v) for v in metadata["reshaped_size"].split(","))
        if len(original) != 2 or len(reshaped) != 2:
            raise ValueError("image sizes must be H,W")
        return StoredEmbedding(ordered, original, reshaped, metadata.get("as_tuple") == "true")

    def _count(self, hit: bool, error: bool = False) -> None:
        with self._lock:
            self.hits += hit
            self.misses += not hit
            self.errors += error

    def _remove(self, pattern: str) -> None:
        try:
            for name in self.fs.glob(pattern) if "*" in pattern else [pattern]:
                self.fs.rm_file(name)
        except OSError:
            pass  # another process removed it first


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors buffer (its JSON header)."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]).get("__metadata__") or {}


def _timestamp(info: dict) -> float:
    modified = info.get("LastModified") or info.get("updated") or info.get("created") or 0
    return modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
