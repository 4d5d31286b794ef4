"""The Label Studio backend app driven like Label Studio drives it, with task images served over loopback HTTP."""

from __future__ import annotations

import functools
import tempfile
import threading
from collections.abc import Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from prelabel.bench.images import BenchImage
from prelabel.core.labels import LabelPrompt
from prelabel.labelstudio.backend import create_app
from prelabel.labelstudio.config import image_config
from prelabel.pipeline.labeler import Labeler
from prelabel.settings import Settings


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class ServerHarness:
    """``create_app`` with already loaded models, its Flask test client, and an HTTP host for the images."""

    def __init__(self, labeler: Labeler, images: Sequence[BenchImage], labels: Sequence[LabelPrompt]) -> None:
        self.images = list(images)
        self.labels = list(labels)
        self._dir = tempfile.TemporaryDirectory(prefix="prelabel-bench-")
        for image in self.images:
            (Path(self._dir.name) / image.name).write_bytes(image.data)
        handler = functools.partial(_QuietHandler, directory=self._dir.name)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, name="prelabel-bench-images", daemon=True).start()
        prompts = ",".join(f"{label.name}={'|'.join(label.prompts)}" for label in labels)
        # The image host plays Label Studio's part, so the fetcher's allowlist admits it.
        settings = Settings(labels=prompts, predict_deadline_s=3600.0, label_studio_url=self.url,
                            **labeler.config.as_settings())
        self.client = create_app(settings, labeler).test_client()
        self.config = image_config([label.name for label in labels], polygons=True, smart_keypoints=True)

    def _post(self, image: BenchImage, context: dict[str, Any] | None) -> list[dict[str, Any]]:
        task = {"id": 1, "data": {"image": f"{self.url}/{image.name}"}}
        response = self.client.post("/predict", json={"tasks": [task], "label_config": self.config,
                                                      "project": "1.1", "params": {"context": context}})
        if response.status_code != 200:
            raise RuntimeError(f"the backend answered {response.status_code}: {response.get_data(as_text=True)}")
        results = response.get_json()["results"]
        if "result" not in results[0]:
            raise RuntimeError(f"the backend returned no result: {results[0]}")
        return results

    def prelabel(self, image: BenchImage) -> list[dict[str, Any]]:
        """A pre-annotation request for one task."""
        return self._post(image, None)

    def click(self, image: BenchImage, point_xy: np.ndarray) -> list[dict[str, Any]]:
        """A smart-keypoint click at a pixel position."""
        height, width = image.pixels.shape[:2]
        value = {"x": float(point_xy[0]) * 100 / width, "y": float(point_xy[1]) * 100 / height,
                 "keypointlabels": [self.labels[0].name]}
        return self._post(image, {"result": [{"type": "keypointlabels", "is_positive": True, "value": value,
                                              "from_name": "keypoint", "to_name": "image"}]})

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self._dir.cleanup()
