"""Fetch task images the way Label Studio serves them: uploads, local files, cloud URIs, plain URLs."""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urljoin, urlparse

import numpy as np
import requests

from prelabel.core.errors import PrelabelError
from prelabel.core.fetch import FetchPolicy, guarded_session, same_origin
from prelabel.core.images import ImageError, decode_image
from prelabel.labelstudio.client import LabelStudioAccess, LabelStudioClient
from prelabel.settings import Settings

_CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi")
_BINARY_TYPES = ("application/octet-stream", "binary/octet-stream")


class ImageFetchError(PrelabelError):
    """An image that could not be fetched; the message names the setting to fix."""


class TaskImageFetcher:
    """Downloads and decodes task images with Label Studio's authentication, size and time limits.

    ``policy`` says which hosts, addresses and local folders may be read (see :mod:`prelabel.core.fetch`); the default
    allows no host at all.
    """

    def __init__(self, timeout_s: float = 20.0, max_bytes: int = 100 * 1024**2, max_pixels: int = 50_000_000,
                 policy: FetchPolicy | None = None, max_redirects: int = 5) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.policy = policy or FetchPolicy()
        self.session = guarded_session(self.policy, max_redirects)

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskImageFetcher:
        return cls(settings.fetch_timeout_s, settings.max_image_bytes, settings.max_pixels,
                   FetchPolicy.from_settings(settings), settings.max_redirects)

    def fetch(self, url: str, access: LabelStudioAccess | None, task_id: int | None = None) -> np.ndarray:
        """The image at a task's URL as an RGB array."""
        if not isinstance(url, str) or not url:
            raise ImageFetchError("the task has no image URL in its data")
        local = self.policy.local_path(url)
        if local is not None:
            return self._decode(self._read_local(local), url)
        url, headers = self._resolve(url, access, task_id)
        return self._decode(self._download(url, headers), url)

    def fetch_video(self, url: str, access: LabelStudioAccess | None, task_id: int | None = None,
                    max_bytes: int | None = None) -> tuple[Path, bool]:
        """A task's video as a local file: ``(path, temporary)``; a temporary file is the caller's to delete.

        Downloads stream to disk (never the whole video in memory) under the same host/address policy, with
        ``max_bytes`` (PRELABEL_MAX_VIDEO_BYTES) instead of the image limit.
        """
        if not isinstance(url, str) or not url:
            raise ImageFetchError("the task has no video URL in its data")
        limit = max_bytes or self.max_bytes
        local = self.policy.local_path(url)
        if local is not None:
            return local, False
        url, headers = self._resolve(url, access, task_id)
        suffix = Path(urlparse(url).path).suffix[:8] or ".mp4"
        handle = tempfile.NamedTemporaryFile(prefix="prelabel-video-", suffix=suffix, delete=False)
        path = Path(handle.name)
        try:
            with handle:
                self._download(url, headers, handle, limit, "PRELABEL_MAX_VIDEO_BYTES", ("video/", "application/mp4"))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, True

    def _resolve(self, url: str, access: LabelStudioAccess | None, task_id: int | None) -> tuple[str, dict[str, str]]:
        """The absolute URL to fetch (Label Studio-relative and cloud URIs resolved) and its auth headers."""
        scheme = urlparse(url).scheme
        if scheme in _CLOUD_SCHEMES:
            if access is None or task_id is None:
                raise ImageFetchError(f"{url} is a cloud storage URI; set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY "
                                      f"so prelabel can resolve it through Label Studio")
            encoded = base64.urlsafe_b64encode(url.encode()).decode()
            url = f"{access.url.rstrip('/')}/tasks/{task_id}/resolve/?fileuri={quote(encoded)}"
        elif not scheme:
            if access is None or not access.url:
                raise ImageFetchError(f"{url} is relative to Label Studio; set LABEL_STUDIO_URL (and "
                                      f"LABEL_STUDIO_API_KEY)")
            url = urljoin(access.url.rstrip("/") + "/", url.lstrip("/"))
        elif scheme not in ("http", "https"):
            raise ImageFetchError(f"unsupported image URL scheme {scheme!r} in {url}")
        headers = LabelStudioClient.for_access(access).auth_headers() if access and same_origin(url, access.url) else {}
        return url, headers

    def _decode(self, data: bytes, source: str) -> np.ndarray:
        try:
            return decode_image(data, self.max_pixels, source=source)
        except ImageError as exc:
            raise ImageFetchError(str(exc)) from exc

    def _read_local(self, path: Path) -> bytes:
        if path.stat().st_size > self.max_bytes:
            raise ImageFetchError(f"{path} is larger than {self.max_bytes} bytes (PRELABEL_MAX_IMAGE_BYTES)")
        return path.read_bytes()

    def _download(self, url: str, headers: dict[str, str], sink: BinaryIO | None = None, max_bytes: int | None = None,
                  limit_name: str = "PRELABEL_MAX_IMAGE_BYTES", kinds: tuple[str, ...] = ("image/",)) -> bytes:
        """The body (or, with ``sink``, written there and ``b""`` returned), within the size and time limits."""
        max_bytes = max_bytes or self.max_bytes
        try:
            with self.session.get(url, headers=headers, timeout=self.timeout_s, stream=True) as response:
                if response.status_code in (401, 403):
                    raise ImageFetchError(f"Label Studio refused {url} ({response.status_code}): check "
                                          f"LABEL_STUDIO_API_KEY (a legacy token or a personal access token)")
                if response.status_code >= 400:
                    raise ImageFetchError(f"fetching {url} failed with HTTP {response.status_code}")
                _check_headers(url, response.headers, max_bytes, kinds, limit_name)
                # Images must arrive within the fetch timeout; a video gets that long per 10 MB.
                allowed = self.timeout_s if sink is None else self.timeout_s * max(1.0, max_bytes / 10e6)
                deadline = time.monotonic() + allowed
                chunks, size = [], 0
                for chunk in response.iter_content(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ImageFetchError(f"{url} is larger than {max_bytes} bytes ({limit_name})")
                    if time.monotonic() > deadline:
                        raise ImageFetchError(f"{url} took longer than {allowed:.0f} s to download "
                                              f"(PRELABEL_FETCH_TIMEOUT_S)")
                    if sink is None:
                        chunks.append(chunk)
                    else:
                        sink.write(chunk)
                return b"".join(chunks)
        except requests.RequestException as exc:
            raise ImageFetchError(f"cannot fetch {url}: {exc.__class__.__name__}; check LABEL_STUDIO_URL and "
                                  f"that the image host is reachable from the backend") from exc


def _check_headers(url: str, headers: Mapping[str, str], max_bytes: int, kinds: tuple[str, ...] = ("image/",),
                   limit_name: str = "PRELABEL_MAX_IMAGE_BYTES") -> None:
    """Refuse early what is declared too large or of the wrong kind (the bytes are sniffed again when decoded)."""
    kind = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind and not (kind.startswith(kinds) or kind in _BINARY_TYPES):
        what = "an image" if kinds == ("image/",) else "a video"
        raise ImageFetchError(f"{url} is not {what} (Content-Type {kind})")
    length = headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise ImageFetchError(f"{url} is larger than {max_bytes} bytes ({limit_name})")
