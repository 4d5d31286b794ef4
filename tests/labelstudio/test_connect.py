"""The README's serve section as a new user follows it, against a plain ``label-studio start``.

A Label Studio started with its own defaults refuses a backend on a loopback address (403, "URL resolves to a
reserved network address"); ``prelabel connect`` must turn that into the exact fix, and the fix must work.
"""

import pytest

from prelabel.cli import main
from prelabel.core.errors import ExitCode
from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.demo import BackendProcess
from prelabel.labelstudio.local import LocalLabelStudio

pytestmark = pytest.mark.e2e

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels></View>"""
# What a plain `label-studio start` runs with (our launcher relaxes both for the rest of the suite).
PLAIN = {"ML_BLOCK_LOCAL_IP": "true", "SSRF_PROTECTION_ENABLED": "true"}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("connect-backend")
    process = BackendProcess({"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny",
                              "PRELABEL_FEEDBACK_DB": str(workdir / "feedback.sqlite3")}, workdir / "backend.log")
    process.wait_ready()
    yield process
    process.stop()


def connect(monkeypatch, server, project, url):
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    return main(["connect", "--project", str(project), "--url", url])


def test_serve_prints_how_to_connect_at_start_up(backend):
    log = backend.log_path.read_text()
    assert f"Connect model with http://127.0.0.1:{backend.port}" in log
    assert f"prelabel connect --project ID --url http://127.0.0.1:{backend.port}" in log
    assert "ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false label-studio start" in log


def test_connect_to_a_plain_label_studio_names_the_fix_and_the_fix_connects(backend, label_studio, tmp_path,
                                                                           monkeypatch, caplog):
    plain = LocalLabelStudio(label_studio.executable, tmp_path / "plain-ls", env=PLAIN).start()
    try:
        project = LabelStudioClient(plain.url, plain.token).create_project("plain", CONFIG)
        assert connect(monkeypatch, plain, project, backend.url) == ExitCode.USAGE
        error = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][-1]
        assert "reserved network address" in error
        assert "`ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false label-studio start`" in error
    finally:
        plain.stop()
    # The fix as printed: the same Label Studio, restarted with both settings (ML_BLOCK_LOCAL_IP=false alone still
    # fails: saving the backend creates its webhook, which SSRF protection checks).
    fixed = LocalLabelStudio(label_studio.executable, tmp_path / "plain-ls", port=plain.port,
                             env={"ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"}).start()
    try:
        caplog.clear()
        caplog.set_level("INFO")
        assert connect(monkeypatch, fixed, project, backend.url) == ExitCode.OK
        (ml,) = LabelStudioClient(fixed.url, fixed.token).ml_backends(project)
        assert ml["url"] == backend.url and ml["state"] == "CO" and ml["model_version"].startswith("prelabel-")
        assert f"connected {backend.url} to project {project}" in caplog.text
        assert connect(monkeypatch, fixed, project, backend.url) == ExitCode.OK, "connecting twice is harmless"
        assert "already has the backend" in caplog.text
        assert len(LabelStudioClient(fixed.url, fixed.token).ml_backends(project)) == 1
    finally:
        fixed.stop()


def test_connect_to_a_backend_that_is_not_running_says_so(label_studio, monkeypatch, caplog):
    project = LabelStudioClient(label_studio.url, label_studio.token).create_project("nobody", CONFIG)
    assert connect(monkeypatch, label_studio, project, "http://127.0.0.1:9") == ExitCode.USAGE
    error = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][-1]
    assert "cannot reach the backend at http://127.0.0.1:9" in error and "prelabel serve" in error


def test_connect_without_label_studio_running_exits_4(monkeypatch, caplog):
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "token123")
    assert main(["connect", "--project", "1"]) == ExitCode.UNAVAILABLE
    assert "is Label Studio running there?" in caplog.text
