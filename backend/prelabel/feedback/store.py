"""The feedback store: SQLite in WAL mode, one transaction per event, so a crash loses nothing acknowledged."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prelabel.feedback.matching import Outcome, RegionOutcome

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, received_at REAL NOT NULL, action TEXT NOT NULL, project TEXT NOT NULL,
    task INTEGER, annotation INTEGER
);
CREATE TABLE IF NOT EXISTS annotations (
    project TEXT NOT NULL, annotation INTEGER NOT NULL, task INTEGER NOT NULL, model_version TEXT NOT NULL,
    lead_time REAL, updated_at REAL NOT NULL, PRIMARY KEY (project, annotation)
);
CREATE TABLE IF NOT EXISTS regions (
    project TEXT NOT NULL, annotation INTEGER NOT NULL, from_name TEXT NOT NULL, label TEXT NOT NULL,
    outcome TEXT NOT NULL, iou REAL, score REAL, features TEXT, boxes TEXT,
    FOREIGN KEY (project, annotation) REFERENCES annotations (project, annotation) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS regions_by_annotation ON regions (project, annotation);
CREATE TABLE IF NOT EXISTS fits (
    id INTEGER PRIMARY KEY, project TEXT NOT NULL, created_at REAL NOT NULL, learned TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class StoredOutcome:
    """A region outcome with the annotation and model version it came from."""

    annotation: int
    model_version: str
    region: RegionOutcome


class FeedbackStore:
    """Human-correction outcomes per Label Studio project; safe to share between threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(regions)")}
            if "boxes" not in columns:  # a store made before boxes were kept: add the column, keep the rows
                db.execute("ALTER TABLE regions ADD COLUMN boxes TEXT")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection whose block commits on success and rolls back on error."""
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=FULL")  # durable at commit, not only consistent
            with db:
                yield db

    def record_annotation(
        self,
        action: str,
        project: str,
        task: int,
        annotation: int,
        model_version: str,
        outcomes: Sequence[RegionOutcome],
        lead_time: float | None = None,
    ) -> None:
        """Store an annotation's outcomes, replacing any earlier version of the same annotation."""
        now = time.time()
        with self._transaction() as db:
            db.execute("INSERT INTO events (received_at, action, project, task, annotation) VALUES (?, ?, ?, ?, ?)",
                       (now, action, project, task, annotation))
            db.execute("DELETE FROM annotations WHERE project = ? AND annotation = ?", (project, annotation))
            db.execute("INSERT INTO annotations VALUES (?, ?, ?, ?, ?, ?)",
                       (project, annotation, task, model_version, lead_time, now))
            db.executemany(
                "INSERT INTO regions (project, annotation, from_name, label, outcome, iou, score, features, boxes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(project, annotation, o.from_name, o.label, o.outcome.value, o.iou, o.score,
                  json.dumps(o.features) if o.features else None, _boxes_json(o)) for o in outcomes],
            )

    def delete_annotations(self, action: str, project: str, annotations: Sequence[int]) -> int:
        """Forget deleted annotations; returns how many were stored."""
        with self._transaction() as db:
            for annotation in annotations:
                db.execute("INSERT INTO events (received_at, action, project, annotation) VALUES (?, ?, ?, ?)",
                           (time.time(), action, project, annotation))
            marks = ",".join("?" * len(annotations))
            cursor = db.execute(f"DELETE FROM annotations WHERE project = ? AND annotation IN ({marks})",
                                (project, *annotations))
            return cursor.rowcount

    def outcomes(self, project: str) -> list[StoredOutcome]:
        """Every stored region outcome of a project, oldest annotation first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT r.annotation, a.model_version, r.from_name, r.label, r.outcome, r.iou, r.score, r.features, "
                "r.boxes FROM regions r JOIN annotations a USING (project, annotation) WHERE r.project = ? "
                "ORDER BY a.updated_at, r.rowid", (project,)).fetchall()
        return [StoredOutcome(ann, version, RegionOutcome(name, label, Outcome(outcome), iou, score,
                                                           json.loads(features) if features else None,
                                                           *_boxes(boxes)))
                for ann, version, name, label, outcome, iou, score, features, boxes in rows]

    def annotations(self, project: str) -> list[tuple[str, float | None]]:
        """``(model_version, lead_time)`` of every stored annotation of a project."""
        with self._transaction() as db:
            return db.execute("SELECT model_version, lead_time FROM annotations WHERE project = ?",
                              (project,)).fetchall()

    def event_count(self, project: str | None = None) -> int:
        """How many webhook events were acknowledged (for one project, or all)."""
        with self._transaction() as db:
            if project is None:
                return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            return int(db.execute("SELECT COUNT(*) FROM events WHERE project = ?", (project,)).fetchone()[0])

    def annotations_since_last_fit(self, project: str) -> int:
        """Annotation events received after the project's latest fit."""
        with self._transaction() as db:
            last = db.execute("SELECT MAX(created_at) FROM fits WHERE project = ?", (project,)).fetchone()[0] or 0
            return int(db.execute(
                "SELECT COUNT(*) FROM events WHERE project = ? AND action LIKE 'ANNOTATION%' AND received_at > ?",
                (project, last)).fetchone()[0])

    def save_fit(self, project: str, learned: dict[str, Any]) -> int:
        """Store a fit result; the newest one is what the server predicts with."""
        with self._transaction() as db:
            cursor = db.execute("INSERT INTO fits (project, created_at, learned) VALUES (?, ?, ?)",
                                (project, time.time(), json.dumps(learned)))
            return int(cursor.lastrowid or 0)

    def latest_fit(self, project: str) -> dict[str, Any] | None:
        """The newest fit of a project, or None."""
        with self._transaction() as db:
            row = db.execute("SELECT learned FROM fits WHERE project = ? ORDER BY id DESC LIMIT 1",
                             (project,)).fetchone()
        return json.loads(row[0]) if row else None


def _boxes_json(outcome: RegionOutcome) -> str | None:
    if outcome.predicted_box is None or outcome.final_box is None:
        return None
    return json.dumps({"predicted": list(outcome.predicted_box), "final": list(outcome.final_box)})


def _boxes(text: str | None) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if not text:
        return None, None
    data = json.loads(text)
    return tuple(data["predicted"]), tuple(data["final"])
