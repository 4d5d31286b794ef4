"""The Nuclio function files, read the way CVAT's lambda manager reads them; the spec generator; the deploy scripts."""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from prelabel.cli import main
from prelabel.core.errors import PrelabelError
from prelabel.cvat.shapes import SHAPE_TYPES
from prelabel.cvat.spec import CvatLabels, labels_from_function_yaml, replace_spec

ROOT = Path(__file__).resolve().parents[2]
SERVERLESS = ROOT / "cvat_serverless"
FUNCTION_DIRS = sorted(SERVERLESS.glob("*/nuclio"))
CVAT_KINDS = {"detector", "interactor", "tracker", "reid"}
# CPU and GPU files may differ only here (flattened paths; env entries by name).
GPU_DIFFERENCES = {
    "spec.build.image",
    "spec.build.directives.preCopy[torch].value",
    "spec.resources.limits.nvidia.com/gpu",
    "spec.env.PRELABEL_DEVICE",
    "spec.env.PRELABEL_CVAT_FUNCTION_FILE",
    "spec.env.NVIDIA_VISIBLE_DEVICES",
}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def cvat_function_view(config: dict[str, Any]) -> dict[str, Any]:
    """What CVAT's LambdaFunction takes from the function config; raises where CVAT would drop the function."""
    annotations = config["metadata"]["annotations"]
    if annotations.get("type") not in CVAT_KINDS:
        raise ValueError(f"unknown type {annotations.get('type')!r}")
    spec = json.loads(annotations.get("spec") or "[]")
    labels = [
        {
            "name": label["name"],
            "type": label.get("type", "unknown"),
            "attributes": [{k: a[k] for k in ("name", "input_type", "values")} for a in label.get("attributes", [])],
        }
        for label in spec
    ]
    if len({label["name"] for label in labels}) != len(labels):
        raise ValueError("non-unique labels")
    return {
        "id": config["metadata"]["name"],
        "kind": annotations["type"],
        "labels": labels,
        "description": config["spec"]["description"],
        "name": annotations.get("name", config["metadata"]["name"]),
        "version": int(annotations.get("version", "1")),
        "min_pos_points": int(annotations.get("min_pos_points", 1)),
        "min_neg_points": int(annotations.get("min_neg_points", -1)),
        "startswith_box": annotations.get("startswith_box", False),
        "startswith_box_optional": annotations.get("startswith_box_optional", False),
    }


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Leaves by dotted path; env lists keyed by variable name, directives by content."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{path}.{key}".lstrip(".")).items()}
    if isinstance(value, list) and path == "spec.env":
        return {f"{path}.{item['name']}": item["value"] for item in value}
    if isinstance(value, list):
        keys = ["torch" if "pip install" in str(v) and " torch" in str(v) else str(i) for i, v in enumerate(value)]
        return {k: v for key, item in zip(keys, value, strict=True) for k, v in flatten(item, f"{path}[{key}]").items()}
    return {path: value}


def test_there_are_a_detector_an_interactor_and_a_tracker():
    kinds = {load(folder / "function.yaml")["metadata"]["annotations"]["type"] for folder in FUNCTION_DIRS}
    assert kinds == {"detector", "interactor", "tracker"}


@pytest.mark.parametrize("folder", FUNCTION_DIRS, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("file_name", ["function.yaml", "function-gpu.yaml"])
def test_function_file_is_what_cvat_and_nuclio_need(folder, file_name):
    config = load(folder / file_name)
    view = cvat_function_view(config)
    assert config["metadata"]["namespace"] == "cvat" and view["description"].strip()
    spec = config["spec"]
    module, _, function = spec["handler"].partition(":")
    source = ast.parse((folder / f"{module}.py").read_text())
    defined = {node.name for node in source.body if isinstance(node, ast.FunctionDef)}
    assert {function, "init_context"} <= defined
    assert spec["runtime"].startswith("python:3.")
    assert spec["eventTimeout"].endswith("s") and int(spec["eventTimeout"][:-1]) >= 60
    assert spec["readinessTimeoutSeconds"] >= 300  # CPU model loading
    trigger = spec["triggers"]["myHttpTrigger"]
    assert trigger["kind"] == "http" and trigger["attributes"]["maxRequestBodySize"] >= 32 * 1024**2
    env = {item["name"]: item["value"] for item in spec.get("env", [])}
    if view["kind"] == "detector":
        assert env["PRELABEL_CVAT_FUNCTION_FILE"] == file_name  # the handler reads the spec it was deployed with
        assert view["labels"] and all(label["type"] in SHAPE_TYPES for label in view["labels"])
        labels = labels_from_function_yaml(folder / file_name)
        assert all(label.prompts for label in labels.prompts)
    elif view["kind"] == "tracker":
        assert view["labels"] == []  # trackers take the task's rectangles, whatever their labels
        directives = " ".join(d["value"] for d in spec["build"]["directives"]["preCopy"])
        assert "PRELABEL_VIDEO_TRACKER=" in directives
    else:
        assert view["labels"] == [] and view["version"] >= 2  # the UI refuses interactors below version 2
        for key in ("startswith_box", "startswith_box_optional"):
            assert view[key] in (True, False)  # CVAT applies bool(): a string "false" would read as true
    postcopy = " ".join(d["value"] for d in spec["build"]["directives"]["postCopy"])
    assert "pip install --no-cache-dir /opt/nuclio/prelabel-src" in postcopy


@pytest.mark.parametrize("folder", FUNCTION_DIRS, ids=lambda p: p.parent.name)
def test_cpu_and_gpu_files_differ_only_where_they_should(folder):
    cpu, gpu = (flatten(load(folder / name)) for name in ("function.yaml", "function-gpu.yaml"))
    differing = {key for key in cpu.keys() | gpu.keys() if cpu.get(key) != gpu.get(key)}
    assert differing <= GPU_DIFFERENCES and "spec.resources.limits.nvidia.com/gpu" in differing
    assert gpu["spec.resources.limits.nvidia.com/gpu"] == 1
    assert (cpu["spec.env.PRELABEL_DEVICE"], gpu["spec.env.PRELABEL_DEVICE"]) == ("cpu", "cuda")
    assert "download.pytorch.org/whl/cpu" in cpu["spec.build.directives.preCopy[torch].value"]
    assert "whl/cpu" not in gpu["spec.build.directives.preCopy[torch].value"]
    assert cpu["spec.build.image"] != gpu["spec.build.image"]


@pytest.mark.parametrize("path", sorted(SERVERLESS.glob("*/nuclio/function*.yaml")), ids=lambda p: p.parent.parent.name
                         + "/" + p.name)
def test_build_steps_that_load_the_models_run(path):
    """The image build loads (downloads) the models with a `python -c` step: the same code, on random-tiny."""
    steps = [d["value"] for d in load(path)["spec"]["build"]["directives"]["postCopy"]
             if d["kind"] == "RUN" and d["value"].startswith("python -c")]
    assert steps
    env = {**os.environ, "PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny", "PRELABEL_DEVICE": "cpu",
           "PRELABEL_VIDEO_TRACKER": "random-tiny-sam2-video"}
    for step in steps:
        result = subprocess.run([sys.executable, "-c", shlex.split(step)[2]], env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr


def test_spec_generator_rewrites_only_the_spec(tmp_path):
    original = SERVERLESS / "gdino_sam" / "nuclio" / "function.yaml"
    target = tmp_path / "function.yaml"
    shutil.copy(original, target)
    code = main(
        [
            "cvat",
            "spec",
            "--labels",
            "rivet=oxidized rivet|rusted bolt,crack@0.3",
            "--label-type",
            "crack=polygon",
            "--out",
            str(target),
            "--out",
            str(tmp_path / "spec.json"),
        ]
    )
    assert code == 0
    before, after = load(original), load(target)
    spec = json.loads(after["metadata"]["annotations"].pop("spec"))
    before["metadata"]["annotations"].pop("spec")
    assert after == before
    assert spec == [
        {"id": 0, "name": "rivet", "type": "mask", "prompts": ["oxidized rivet", "rusted bolt"]},
        {"id": 1, "name": "crack", "type": "polygon", "prompts": ["crack"], "box_threshold": 0.3},
    ]
    assert json.loads((tmp_path / "spec.json").read_text()) == spec
    comments = [line for line in original.read_text().splitlines() if line.lstrip().startswith("#")]
    assert comments and all(line in target.read_text().splitlines() for line in comments)
    assert CvatLabels.from_spec(spec) == CvatLabels.parse(
        "rivet=oxidized rivet|rusted bolt,crack@0.3", types={"crack": "polygon"}
    )


def test_spec_generator_prints_json_and_rejects_bad_labels(capsys, caplog):
    assert main(["cvat", "spec", "--labels", "cat,dog=puppy|dog", "--type", "rectangle"]) == 0
    assert [entry["type"] for entry in json.loads(capsys.readouterr().out)] == ["rectangle", "rectangle"]


def test_spec_out_to_a_missing_function_yaml_names_the_fix(tmp_path, caplog):
    assert main(["cvat", "spec", "--labels", "cat", "--out", str(tmp_path / "fn.yaml")]) == 2
    assert "updates an existing Nuclio function.yaml" in caplog.text
    assert not (tmp_path / "fn.yaml").exists()
    for argv in (
        ["--labels", "a,a"],
        ["--labels", ""],
        ["--labels", "a", "--label-type", "b=mask"],
        ["--labels", "a", "--label-type", "a=ellipse"],
    ):
        caplog.clear()
        assert main(["cvat", "spec", *argv]) == 2
        assert [r.levelname for r in caplog.records] == ["ERROR"], "one error line, no traceback"


def test_replace_spec_needs_an_annotations_spec():
    with pytest.raises(PrelabelError, match=r"metadata\.annotations\.spec"):
        replace_spec("metadata:\n  name: x\nspec:\n  handler: main:handler\n", CvatLabels.parse("a"))


def test_the_current_detector_spec_round_trips():
    path = SERVERLESS / "gdino_sam" / "nuclio" / "function.yaml"
    labels = labels_from_function_yaml(path)
    assert replace_spec(path.read_text(), labels) == path.read_text()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash and tar")
@pytest.mark.parametrize(
    "script, file_name", [("deploy_cpu.sh", "function.yaml"), ("deploy_gpu.sh", "function-gpu.yaml")]
)
def test_deploy_script_stages_the_source_and_deploys_into_project_cvat(tmp_path, script, file_name):
    assert os.stat(SERVERLESS / script).st_mode & stat.S_IXUSR
    fake = tmp_path / "nuctl"  # test double: records its arguments and what --path holds
    fake.write_text(
        '#!/bin/bash\necho "$*" >> "$NUCTL_LOG"\n'
        'if [ "$1" = deploy ]; then\n'
        '  while [ "$#" -gt 0 ]; do [ "$1" = --path ] && ls -R "$2" >> "$NUCTL_LOG"; shift; done\n'
        "fi\n"
        '[ "$1 $2" != "get project" ]\n'
    )
    fake.chmod(0o755)
    log = tmp_path / "log"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "NUCTL_LOG": str(log)}
    subprocess.run(["bash", str(SERVERLESS / script)], check=True, env=env, capture_output=True)
    text = log.read_text()
    deploys = [line for line in text.splitlines() if line.startswith("deploy ")]
    assert len(deploys) == len(FUNCTION_DIRS)
    assert "create project cvat --platform local" in text
    for line in deploys:
        assert "--project-name cvat" in line and "--platform local" in line and f"/{file_name} " in line
        assert '"network": "cvat_cvat"' in line
    assert text.count("prelabel-src") >= len(FUNCTION_DIRS) and "pyproject.toml" in text and "main.py" in text


def test_readme_covers_deploy_labels_gpu_timeout_and_agents():
    readme = (SERVERLESS / "README.md").read_text()
    for needle in (
        "deploy_cpu.sh",
        "deploy_gpu.sh",
        "prelabel cvat spec",
        "CVAT_NUCLIO_DEFAULT_TIMEOUT",
        "function create-native",
        "function run-agent",
        "task auto-annotate",
        "--function-module prelabel.cvat.sdk_function",
        "labels=str:",
    ):
        assert needle in readme, needle
