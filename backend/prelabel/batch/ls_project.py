"""A Label Studio project as a batch source and as the destination of its predictions (label-studio-sdk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prelabel.batch.outputs import ls_prediction
from prelabel.batch.records import record_regions
from prelabel.batch.sources import ImageItem
from prelabel.formats.labelstudio import LabelConfig, parse_label_config
from prelabel.server.ls_push import push_prediction, sdk_client, set_project_model_version
from prelabel.server.task_images import LabelStudioAccess

PUSHED = "labelstudio_pushed.txt"


def _project_id(access: LabelStudioAccess | None, project: str) -> int:
    if access is None or not access.url or not access.api_key:
        raise ValueError("a Label Studio project needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
    if not project.isdigit():
        raise ValueError(f"ls:{project} is not a project id; use e.g. ls:3")
    return int(project)


def project_label_config(access: LabelStudioAccess | None, project: str) -> str:
    """The project's labeling config XML."""
    return str(sdk_client(access).projects.get(_project_id(access, project)).label_config)


def label_studio_items(project: str, access: LabelStudioAccess | None) -> list[ImageItem]:
    """The image of every task of a project (the data key comes from its labeling config)."""
    project_id = _project_id(access, project)
    client = sdk_client(access)
    image_key = parse_label_config(client.projects.get(project_id).label_config).image_key
    return [ImageItem(f"task-{task.id:09d}", str(task.data.get(image_key, "")), task.id)
            for task in client.tasks.list(project=project_id)]


def push_predictions(
    access: LabelStudioAccess | None, project_id: int, records: dict[str, dict[str, Any]], config: LabelConfig,
    out_dir: Path,
) -> int:
    """Store each labeled task's prediction once (tasks already pushed are listed in ``out_dir/PUSHED``),
    then point the project's model_version at it so the Data Manager sorts by its score."""
    assert access is not None
    log_path = out_dir / PUSHED
    pushed = set(log_path.read_text(encoding="utf-8").split()) if log_path.exists() else set()
    done = [r for key, r in sorted(records.items()) if "error" not in r and key not in pushed]
    with log_path.open("a", encoding="utf-8") as log_file:
        for record in done:
            push_prediction(access, record["task_id"], ls_prediction(record, record_regions(record), config))
            log_file.write(record["key"] + "\n")
            log_file.flush()
    versions = {r["model_version"] for r in records.values() if "error" not in r}
    if len(versions) == 1:
        set_project_model_version(access, project_id, versions.pop())
    return len(done)
