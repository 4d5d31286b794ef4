"""Push a batch's predictions into its Label Studio project, once per task even across reruns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prelabel.batch.records import record_regions
from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.config import LabelConfig
from prelabel.labelstudio.results import prediction

PUSHED = "labelstudio_pushed.txt"


def push_predictions(
    client: LabelStudioClient, project: int, records: dict[str, dict[str, Any]], config: LabelConfig,
    out_dir: Path, review_threshold: float,
) -> int:
    """Store each labeled task's prediction once (tasks already pushed are listed in ``out_dir/PUSHED``),
    then point the project's model_version at it so the Data Manager sorts by its score."""
    log_path = out_dir / PUSHED
    pushed = set(log_path.read_text(encoding="utf-8").split()) if log_path.exists() else set()
    done = [r for key, r in sorted(records.items()) if "error" not in r and key not in pushed]
    with log_path.open("a", encoding="utf-8") as log_file:
        for record in done:
            client.push_prediction(record["task_id"], prediction(record_regions(record), config,
                                                                 record["model_version"], review_threshold))
            log_file.write(record["key"] + "\n")
            log_file.flush()
    versions = {r["model_version"] for r in records.values() if "error" not in r}
    if len(versions) == 1:
        client.set_project_model_version(project, versions.pop())
    return len(done)
