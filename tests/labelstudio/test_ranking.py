"""Review ranking: order by prediction score, diversity, files, and the CLI commands of active learning."""

import json

import numpy as np
import pytest

from prelabel.cli import main
from prelabel.core.errors import PrelabelError
from prelabel.feedback.matching import Outcome, RegionOutcome
from prelabel.feedback.store import FeedbackStore
from prelabel.labelstudio.ranking import diverse_order, load_tasks, rank_tasks


def box_item(label, x, y, score=0.9):
    return {"type": "rectanglelabels", "from_name": "bbox", "to_name": "image", "original_width": 100,
            "original_height": 100, "score": score,
            "value": {"x": x, "y": y, "width": 10, "height": 10, "rotation": 0, "rectanglelabels": [label]}}


def task(task_id, score, items, version="prelabel-abc"):
    return {"id": task_id, "data": {"image": f"/data/upload/{task_id}.png"},
            "predictions": [{"model_version": "other", "score": 0.0, "result": []},
                            {"model_version": version, "score": score, "result": items}]}


TASKS = [
    task(1, 0.9, [box_item("cat", 10, 10)]),
    task(2, 0.2, [box_item("cat", 10, 10)]),
    task(3, 0.3, [box_item("cat", 12, 11)]),  # looks like task 2
    task(4, 0.4, [box_item("dog", 80, 80)]),
    {"id": 5, "data": {"image": "/data/upload/5.png"}},  # never predicted
]


def test_rank_by_prelabel_score_with_unpredicted_tasks_last():
    ranked = rank_tasks(TASKS, review_threshold=0.35)
    assert [r.task for r in ranked] == [2, 3, 4, 1, 5]
    assert [r.flagged for r in ranked] == [True, True, False, False, False]
    assert ranked[0].score == 0.2 and ranked[-1].score is None and ranked[0].image == "/data/upload/2.png"


def test_diversity_postpones_lookalikes():
    assert [r.task for r in rank_tasks(TASKS, 0.35, max_similarity=0.9)] == [2, 4, 3, 1, 5]
    vectors = np.eye(3)[[0, 0, 1, 0]]
    assert diverse_order(vectors, 0.9) == [0, 2, 1, 3]


def test_rank_cli_reads_a_batch_folder_and_writes_csv(tmp_path, capsys):
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "tasks.json").write_text(json.dumps(TASKS))
    (tmp_path / "batch" / "other.json").write_text(json.dumps({"not": "tasks"}))
    out = tmp_path / "ranked.csv"
    assert main(["rank", str(tmp_path / "batch"), "--out", str(out), "--review-threshold", "0.35"]) == 0
    assert "5 tasks, 2 below the review threshold 0.35" in capsys.readouterr().out
    assert [line.split(",")[1] for line in out.read_text().splitlines()[1:]] == ["2", "3", "4", "1", "5"]
    with pytest.raises(PrelabelError, match="no Label Studio tasks"):
        load_tasks(tmp_path / "batch" / "other.json")
    assert main(["rank"]) == 2, "neither a file nor a project is a usage error"


def test_fit_and_report_cli_on_a_store(tmp_path, capsys):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    rng = np.random.default_rng(0)
    for i, score in enumerate(rng.uniform(0.35, 1.0, 40)):
        kind = Outcome.ACCEPTED if score > 0.6 else Outcome.DELETED
        store.record_annotation("ANNOTATION_CREATED", "4", i, i, "prelabel-v1",
                                [RegionOutcome("bbox", "cat", kind, None, float(score), None)])
    config = tmp_path / "config.xml"
    config.write_text('<View><Image name="i" value="$image"/><RectangleLabels name="bbox" toName="i">'
                      '<Label value="cat"/></RectangleLabels></View>')
    assert main(["fit", "--project", "4", "--db", str(db), "--label-config", str(config)]) == 0
    learned = json.loads(capsys.readouterr().out)
    assert 0.55 < learned["thresholds"]["cat"] <= 0.62 and learned["calibration"] is None, "no signals stored"
    assert main(["report", "--project", "4", "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"]["predicted"] == 40 and report["annotations"] == 40
    for command in ("report", "fit"):
        assert main([command, "--project", "4", "--db", str(tmp_path / "missing.sqlite3")]) == 2
    assert not (tmp_path / "missing.sqlite3").exists(), "a typo in --db must not create an empty store"
