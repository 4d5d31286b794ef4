"""End-to-end checks of the local Label Studio launcher against a real server."""

from __future__ import annotations

import io
import os
import socket
from urllib.parse import urljoin

import pytest
import requests
from PIL import Image

from prelabel.labelstudio.local import LABEL_STUDIO_LOCK, LABEL_STUDIO_VERSION, LocalLabelStudio

pytestmark = pytest.mark.e2e

LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="bbox" toName="image"><Label value="cat"/><Label value="dog"/></RectangleLabels>
  <PolygonLabels name="poly" toName="image"><Label value="cat"/><Label value="dog"/></PolygonLabels>
  <BrushLabels name="brush" toName="image"><Label value="cat"/><Label value="dog"/></BrushLabels>
</View>"""


def test_lock_pins_every_package_of_the_label_studio_it_installs(label_studio: LocalLabelStudio) -> None:
    """The lock names the launched version and pins each package exactly (open-ended pins let sentry-sdk 3 in)."""
    pins = [line for line in LABEL_STUDIO_LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert f"label-studio=={LABEL_STUDIO_VERSION}" in pins
    assert all("==" in pin for pin in pins), [pin for pin in pins if "==" not in pin]
    assert requests.get(f"{label_studio.url}/api/version", timeout=10).json()["release"] == LABEL_STUDIO_VERSION


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_project_import_and_image_fetch(label_studio: LocalLabelStudio) -> None:
    client = label_studio.client().sdk
    assert client.users.whoami().email == label_studio.username  # the SDK authenticates with the legacy token
    project = client.projects.create(title="ls_local e2e", label_config=LABEL_CONFIG)

    images = {"img0.png": _png((80, 56), (200, 30, 30)), "img1.png": _png((64, 48), (30, 30, 200))}
    files = {f"file{i}": (name, data, "image/png") for i, (name, data) in enumerate(images.items())}
    response = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                             headers=label_studio.auth_headers, timeout=60)
    assert response.status_code == 201, response.text
    assert response.json()["task_count"] == 2

    tasks = list(client.tasks.list(project=project.id))
    assert len(tasks) == 2
    sizes = set()
    for task in tasks:
        image_url = task.data["image"]
        assert image_url.startswith("/data/upload/"), image_url
        fetched = requests.get(urljoin(label_studio.url, image_url), headers=label_studio.auth_headers, timeout=30)
        assert fetched.status_code == 200
        sizes.add(Image.open(io.BytesIO(fetched.content)).size)
    assert sizes == {(80, 56), (64, 48)}


def test_stop_kills_process_group_and_frees_port(label_studio: LocalLabelStudio) -> None:
    pid = label_studio.pid
    assert pid is not None
    label_studio.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", label_studio.port)) != 0

    label_studio.start()  # restart on the existing DB: same port, token still accepted
    assert requests.get(f"{label_studio.url}/api/projects", headers=label_studio.auth_headers, timeout=10).ok
