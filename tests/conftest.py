"""Shared pytest fixtures."""

import os

# No network here or in CI: the hub must not be asked (it would time out), only local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Iterator  # noqa: E402  (imports after the env above)
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from postgres_server import LocalPostgres, postgres_bindir  # noqa: E402

from prelabel.labelstudio.local import LocalLabelStudio, ensure_label_studio  # noqa: E402
from prelabel.pipeline import Labeler, build_labeler  # noqa: E402
from prelabel.settings import Settings  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[LocalLabelStudio]:
    """A real Label Studio on a free loopback port with an empty DB.

    It runs from the venv ``$PRELABEL_LS_VENV`` (default ``<repo>/.venv-ls``), installed there on first use.
    """
    venv_dir = Path(os.environ.get("PRELABEL_LS_VENV") or REPO_ROOT / ".venv-ls")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # show pip's progress during a first-time install
        executable = ensure_label_studio(venv_dir)
    with LocalLabelStudio(executable, tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.fixture(scope="module")
def random_tiny_env() -> Iterator[None]:
    """``PRELABEL_*`` variables for random-tiny models on the CPU, and none that would pick labels or a spec file."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny",
                            "PRELABEL_DEVICE": "cpu"}.items():
            patch.setenv(name, value)
        for name in ("PRELABEL_LABELS", "PRELABEL_CVAT_FUNCTION_FILE", "PRELABEL_CONFIG"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def labeler() -> Labeler:
    """random-tiny Grounding DINO + SAM on the CPU, box threshold 0.3 (random-tiny finds regions at any image)."""
    return build_labeler(Settings(detector="random-tiny", segmenter="random-tiny", device="cpu", box_threshold=0.3))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A real PostgreSQL on a free loopback port (Debian's ``postgresql`` package; ``.ci/run`` installs it)."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries absent (no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    server = LocalPostgres(bindir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres) -> str:
    """The URL of a new, empty database on :func:`postgres_server`."""
    return postgres_server.database()
