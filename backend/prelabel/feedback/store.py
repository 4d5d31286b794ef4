"""The feedback store: one transaction per event, so a crash loses nothing acknowledged.

It takes a database URL (SQLAlchemy Core): a file path or ``sqlite:///path`` is the embedded default (WAL,
``synchronous=FULL``); ``postgresql://user:pass@host/db`` serves several backend replicas at once. Events are
idempotent by annotation id and version (Label Studio's ``updated_at``): a redelivered webhook is not counted
twice, a newer version replaces the stored one, an older one arriving late does not. Fits are numbered in commit
order, so every replica reads the same newest one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from prelabel.core.errors import PrelabelError, Unavailable
from prelabel.core.parsing import parsed
from prelabel.feedback.matching import Outcome, RegionOutcome

Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite's INTEGER PRIMARY KEY is its rowid

metadata = MetaData()
EVENTS = Table(
    "events", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False),
    Column("action", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("task", BigInteger),
    Column("annotation", BigInteger),
    Column("version", Text),  # the annotation's updated_at ("deleted" for a deletion); NULL: not deduplicated
    Index("events_once", "project", "annotation", "version", unique=True),
)
ANNOTATIONS = Table(
    "annotations", metadata,
    Column("project", Text, nullable=False),
    Column("annotation", BigInteger, nullable=False),
    Column("task", BigInteger, nullable=False),
    Column("model_version", Text, nullable=False),
    Column("lead_time", Float),
    Column("updated_at", Float, nullable=False),
    Column("version", Text),
    PrimaryKeyConstraint("project", "annotation"),
)
REGIONS = Table(
    "regions", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project", Text, nullable=False),
    Column("annotation", BigInteger, nullable=False),
    Column("from_name", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("iou", Float),
    Column("score", Float),
    Column("features", Text),
    Column("boxes", Text),
    ForeignKeyConstraint(["project", "annotation"], ["annotations.project", "annotations.annotation"],
                         ondelete="CASCADE"),
    Index("regions_by_annotation", "project", "annotation"),
)
FITS = Table(
    "fits", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("learned", Text, nullable=False),
)

DELETED = "deleted"  # the version of a deletion event


class StoreError(PrelabelError):
    """A feedback store location prelabel cannot use (PRELABEL_FEEDBACK_DB / --db)."""


@dataclass(frozen=True)
class StoredOutcome:
    """A region outcome with the annotation and model version it came from."""

    annotation: int
    model_version: str
    region: RegionOutcome


def database_url(target: str | Path) -> URL:
    """A file path, ``sqlite:///path`` or ``postgresql://...`` -> the SQLAlchemy URL (psycopg 3 for PostgreSQL)."""
    text_target = str(target)
    if "://" not in text_target:
        return URL.create("sqlite", database=str(Path(text_target)))
    if text_target.startswith("postgres://"):  # the short scheme some hosts hand out
        text_target = "postgresql://" + text_target[len("postgres://"):]
    try:
        url = make_url(text_target)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {target!s} (use a file path, sqlite:///PATH or "
                         "postgresql://USER:PASSWORD@HOST:PORT/DB)") from exc
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported feedback database {url.get_backend_name()!r}: use SQLite or PostgreSQL")
    return url


def store_exists(target: str | Path) -> bool:
    """Whether a store is there to read: the SQLite file exists; a server database is assumed to."""
    url = database_url(target)
    if url.get_backend_name() == "sqlite":
        return bool(url.database) and Path(str(url.database)).exists()
    return True


class FeedbackStore:
    """Human-correction outcomes per Label Studio project; safe to share between threads, processes and (on
    PostgreSQL) machines."""

    def __init__(self, target: str | Path) -> None:
        self.url = database_url(target)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.path: Path | None = Path(str(self.url.database)) if self.sqlite and self.url.database else None
        self.engine = self._engine()
        try:
            self._migrate()
        except OperationalError as exc:
            self.engine.dispose()
            raise Unavailable(f"cannot open the feedback store {self.describe()}: {exc.orig}") from exc

    def describe(self) -> str:
        """Where the store is, without the password."""
        return self.url.render_as_string(hide_password=True)

    def _engine(self) -> Engine:
        if not self.sqlite:
            try:
                engine = create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10)
            except (ModuleNotFoundError, NoSuchModuleError) as exc:
                raise StoreError("PostgreSQL needs psycopg: pip install 'prelabel[postgres]'") from exc
        else:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None  # transactions begin where we say (below), not lazily
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")  # persistent; a no-op once the file is in WAL
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA synchronous=FULL")  # durable at commit, not only consistent
                cursor.close()

            @event.listens_for(engine, "begin")
            def _begin(connection: Connection) -> None:
                write = connection.get_execution_options().get("prelabel_write")
                connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        if hasattr(os, "register_at_fork"):  # a forked worker opens its own connections
            os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
        return engine

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        """A connection whose block commits on success and rolls back on error (SQLite: writers take the
        write lock at the start, so a read-then-write block cannot be overtaken)."""
        with self.engine.connect() as db:
            db.execution_options(prelabel_write=write)
            with db.begin():
                yield db

    def _lock(self, db: Connection, *key: Any) -> None:
        """Serialise writers of one key across replicas (PostgreSQL advisory lock, released at commit); on
        SQLite the transaction already holds the database's write lock."""
        if self.sqlite:
            return
        digest = hashlib.blake2b(json.dumps(key).encode(), digest_size=8).digest()
        db.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))

    def _migrate(self) -> None:
        """Create the tables, or bring an older store's up to date keeping every row."""
        with self._transaction(write=True) as db:
            self._lock(db, "schema")  # replicas starting together create the tables once
            have = set(inspect(db).get_table_names())
            if "regions" in have:
                columns = {c["name"] for c in inspect(db).get_columns("regions")}
                if "boxes" not in columns:  # a store made before boxes were kept
                    db.execute(text("ALTER TABLE regions ADD COLUMN boxes TEXT"))
                    columns.add("boxes")
                if "id" not in columns:  # a store made before regions were numbered: rebuild, same order
                    kept = [c.name for c in REGIONS.columns if c.name != "id"]
                    db.execute(text("DROP INDEX IF EXISTS regions_by_annotation"))
                    db.execute(text("ALTER TABLE regions RENAME TO regions_old"))
                    REGIONS.create(db)
                    names = ", ".join(kept)
                    db.execute(text(f"INSERT INTO regions ({names}) SELECT {names} FROM regions_old ORDER BY rowid"))
                    db.execute(text("DROP TABLE regions_old"))
            for table in ("events", "annotations"):
                if table in have and "version" not in {c["name"] for c in inspect(db).get_columns(table)}:
                    db.execute(text(f"ALTER TABLE {table} ADD COLUMN version TEXT"))
            metadata.create_all(db)  # what is missing, with its indexes

    def record_annotation(
        self,
        action: str,
        project: str,
        task: int,
        annotation: int,
        model_version: str,
        outcomes: Sequence[RegionOutcome],
        lead_time: float | None = None,
        version: str | None = None,
    ) -> str:
        """Store an annotation's outcomes, replacing any earlier version of the same annotation.

        ``version`` (Label Studio's ``updated_at``) makes it idempotent: returns ``"stored"``, ``"duplicate"``
        (this version was stored already), ``"stale"`` (a newer version is stored) or ``"deleted"`` (the
        annotation was deleted meanwhile). Without a version every call is stored and counted.
        """
        now = time.time()
        with self._transaction(write=True) as db:
            self._lock(db, "annotation", project, annotation)
            if version is not None and db.execute(select(EVENTS.c.id).where(
                    EVENTS.c.project == project, EVENTS.c.annotation == annotation,
                    EVENTS.c.version.in_([version, DELETED])).limit(1)).first():
                deleted = db.execute(select(EVENTS.c.id).where(
                    EVENTS.c.project == project, EVENTS.c.annotation == annotation,
                    EVENTS.c.version == DELETED).limit(1)).first()
                return DELETED if deleted else "duplicate"
            db.execute(insert(EVENTS).values(received_at=now, action=action, project=project, task=task,
                                             annotation=annotation, version=version))
            key = (ANNOTATIONS.c.project == project) & (ANNOTATIONS.c.annotation == annotation)
            stored = db.execute(select(ANNOTATIONS.c.version).where(key)).first()
            if stored is not None and stored[0] is not None and version is not None \
                    and _version_order(version) < _version_order(stored[0]):
                return "stale"
            db.execute(delete(ANNOTATIONS).where(key))
            db.execute(insert(ANNOTATIONS).values(project=project, annotation=annotation, task=task,
                                                  model_version=model_version, lead_time=lead_time,
                                                  updated_at=now, version=version))
            if outcomes:
                db.execute(insert(REGIONS), [
                    {"project": project, "annotation": annotation, "from_name": o.from_name, "label": o.label,
                     "outcome": o.outcome.value, "iou": o.iou, "score": o.score,
                     "features": json.dumps(o.features) if o.features else None, "boxes": _boxes_json(o)}
                    for o in outcomes])
        return "stored"

    def delete_annotations(self, action: str, project: str, annotations: Sequence[int]) -> int:
        """Forget deleted annotations; returns how many were stored."""
        gone = 0
        with self._transaction(write=True) as db:
            for annotation in sorted(set(annotations)):  # one order, so two replicas cannot deadlock
                self._lock(db, "annotation", project, annotation)
                if db.execute(select(EVENTS.c.id).where(
                        EVENTS.c.project == project, EVENTS.c.annotation == annotation,
                        EVENTS.c.version == DELETED).limit(1)).first():
                    continue  # a redelivered deletion
                db.execute(insert(EVENTS).values(received_at=time.time(), action=action, project=project,
                                                 annotation=annotation, version=DELETED))
                gone += db.execute(delete(ANNOTATIONS).where(
                    ANNOTATIONS.c.project == project, ANNOTATIONS.c.annotation == annotation)).rowcount
        return gone

    def outcomes(self, project: str) -> list[StoredOutcome]:
        """Every stored region outcome of a project, oldest annotation first."""
        r, a = REGIONS.c, ANNOTATIONS.c
        query = (select(r.annotation, a.model_version, r.from_name, r.label, r.outcome, r.iou, r.score, r.features,
                        r.boxes)
                 .join_from(REGIONS, ANNOTATIONS, (r.project == a.project) & (r.annotation == a.annotation))
                 .where(r.project == project).order_by(a.updated_at, r.id))
        with self._transaction() as db:
            rows = db.execute(query).all()
        return [StoredOutcome(ann, version, RegionOutcome(name, label, Outcome(outcome), iou, score,
                                                           json.loads(features) if features else None,
                                                           *_boxes(boxes)))
                for ann, version, name, label, outcome, iou, score, features, boxes in rows]

    def annotations(self, project: str) -> list[tuple[str, float | None]]:
        """``(model_version, lead_time)`` of every stored annotation of a project."""
        with self._transaction() as db:
            rows = db.execute(select(ANNOTATIONS.c.model_version, ANNOTATIONS.c.lead_time)
                              .where(ANNOTATIONS.c.project == project)).all()
        return [(version, lead_time) for version, lead_time in rows]

    def event_count(self, project: str | None = None) -> int:
        """How many webhook events were acknowledged (for one project, or all); a redelivery counts once."""
        query = select(func.count()).select_from(EVENTS)
        if project is not None:
            query = query.where(EVENTS.c.project == project)
        with self._transaction() as db:
            return int(db.execute(query).scalar_one())

    def annotations_since_last_fit(self, project: str) -> int:
        """Annotation events received after the project's latest fit."""
        with self._transaction() as db:
            last = db.execute(select(func.max(FITS.c.created_at)).where(FITS.c.project == project)).scalar() or 0
            return int(db.execute(select(func.count()).select_from(EVENTS).where(
                EVENTS.c.project == project, EVENTS.c.action.like("ANNOTATION%"),
                EVENTS.c.received_at > last)).scalar_one())

    def save_fit(self, project: str, learned: dict[str, Any]) -> int:
        """Store a fit result; the newest one is what the server predicts with."""
        with self._transaction(write=True) as db:
            self._lock(db, "fit", project)  # ids in commit order: the highest is the newest committed
            result = db.execute(insert(FITS).values(project=project, created_at=time.time(),
                                                    learned=json.dumps(learned)))
            return int(result.inserted_primary_key[0] or 0)

    def latest_fit(self, project: str) -> dict[str, Any] | None:
        """The newest fit of a project, or None."""
        with self._transaction() as db:
            row = db.execute(select(FITS.c.learned).where(FITS.c.project == project)
                             .order_by(FITS.c.id.desc()).limit(1)).first()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        """Close the store's pooled connections."""
        self.engine.dispose()


def _version_order(version: str) -> tuple[int, float | str]:
    """Label Studio's ``updated_at`` (ISO 8601) as a sortable key; other strings sort after, by text."""
    moment = parsed(datetime.fromisoformat, version)
    return (0, moment.timestamp()) if moment is not None else (1, version)


def _boxes_json(outcome: RegionOutcome) -> str | None:
    if outcome.predicted_box is None or outcome.final_box is None:
        return None
    return json.dumps({"predicted": list(outcome.predicted_box), "final": list(outcome.final_box)})


def _boxes(text_: str | None) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if not text_:
        return None, None
    data = json.loads(text_)
    return tuple(data["predicted"]), tuple(data["final"])
