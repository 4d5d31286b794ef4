"""Exploration in a real Label Studio: candidates are stored in the predictions, flagged, and the Data Manager
tab "prelabel: exploration candidates" selects exactly the tasks that have them."""

import numpy as np
import pytest
from PIL import Image

from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.demo import BackendProcess
from prelabel.labelstudio.ranking import save_review_views
from prelabel.labelstudio.results import CANDIDATE_NOTE

pytestmark = pytest.mark.e2e

ONE_LABEL = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels></View>"""


def test_candidates_reach_label_studio_and_its_data_manager_tab(label_studio, tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 255, (64 + 16 * i, 96, 3), dtype=np.uint8)).save(paths[-1])
    # random-tiny scores lie in about 0.34-1: a 0.99 cut leaves detections below it to explore.
    env = {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny", "PRELABEL_DEVICE": "cpu",
           "PRELABEL_BOX_THRESHOLD": "0.99", "PRELABEL_EXPLORE_SHARE": "1", "PRELABEL_EXPLORE_MAX": "2",
           "PRELABEL_EXPLORE_FLOOR": "0.3", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "PRELABEL_FEEDBACK_DB": str(tmp_path / "fb.sqlite3")}
    backend = BackendProcess(env, tmp_path / "backend.log")
    backend.wait_ready()
    try:
        api = LabelStudioClient(label_studio.url, label_studio.token)
        project = api.create_project("exploration", ONE_LABEL)
        task_ids = api.import_images(project, paths)
        api.connect_backend(project, backend.url)
        api.retrieve_predictions(project, task_ids[:2])  # the third task gets no prediction
        for task in task_ids[:2]:
            result = api.predictions(task)[0]["result"]
            candidates = [item for item in result if (item.get("prelabel") or {}).get("candidate")]
            assert 1 <= len(candidates) <= 2, "at most PRELABEL_EXPLORE_MAX candidates per task"
            assert all(item["meta"]["text"][0].startswith(CANDIDATE_NOTE) and item["prelabel"]["explore_weight"] >= 1
                       for item in candidates)
        views = save_review_views(api, project, 0.45)
        listed = sorted(t["id"] for t in api.tasks(project, view=views["exploration candidates"]))
        assert listed == sorted(task_ids[:2]), "Label Studio's filter selects the tasks with candidates"
    finally:
        backend.stop()
