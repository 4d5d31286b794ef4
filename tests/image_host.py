"""A loopback HTTP server that serves images like Label Studio does (token-protected /data/ paths)."""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image


def write_random_images(root: Path, sizes: Mapping[str, tuple[int, int]], seed: int = 0) -> Path:
    """Random RGB images named by ``sizes`` keys, each ``(height, width)``, written into ``root``."""
    rng = np.random.default_rng(seed)
    for name, (height, width) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / name)
    return root


class ImageHost:
    """Serves ``root`` on 127.0.0.1; paths under /data/ need ``Authorization: Token <token>``.

    ``/redirect?to=URL`` answers 302 to ``URL``, as Label Studio's cloud-storage resolver does.
    """

    def __init__(self, root: Path, token: str = "test-token") -> None:
        host = self
        self.root, self.token, self.requests, self.deletes = root, token, [], []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                host.requests.append((self.path, self.headers.get("Authorization")))
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.partition("=")[2])
                    self.end_headers()
                    return
                if self.path.startswith("/data/") and self.headers.get("Authorization") != f"Token {host.token}":
                    self.send_error(401)
                    return
                path = host.root / self.path.split("?")[0].rsplit("/", 1)[-1]
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                kind = mimetypes.guess_type(path.name)[0]
                if kind:
                    self.send_header("Content-Type", kind)
                self.end_headers()
                self.wfile.write(body)

            def do_DELETE(self) -> None:  # noqa: N802  (Label Studio's DELETE /api/predictions/ID)
                host.deletes.append((self.path, "DELETE"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ImageHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
