"""The feedback store on SQLite and on a real PostgreSQL: idempotent events, newest version wins, consistent fits,
migrations that keep rows, and several writers (threads, stores as replicas) at once."""

import sqlite3
import threading

import pytest

from prelabel.core.errors import PrelabelError, Unavailable
from prelabel.feedback.matching import Outcome, RegionOutcome
from prelabel.feedback.store import FeedbackStore, StoreError, database_url, store_exists
from prelabel.labelstudio.local import free_port

T1, T2, T3 = "2026-11-22T21:35:48.330911Z", "2026-11-22T21:35:49.633943Z", "2026-11-22T21:40:00Z"


def region(label, kind="accepted", score=0.8):
    return RegionOutcome("bbox", label, Outcome(kind), 0.9 if kind != "deleted" else None, score, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Where a store lives: a SQLite file path, or a fresh database on a real PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "fb.sqlite3")
    return request.getfixturevalue("postgres_url")


def test_events_are_idempotent_by_annotation_and_version(target):
    store = FeedbackStore(target)
    assert store.record_annotation("ANNOTATION_CREATED", "1", 10, 100, "prelabel-x", [region("a", "deleted")],
                                   2.0, T1) == "stored"
    assert store.record_annotation("ANNOTATION_CREATED", "1", 10, 100, "prelabel-x", [region("a", "deleted")],
                                   2.0, T1) == "duplicate", "a redelivered webhook"
    assert store.event_count("1") == 1 and store.annotations_since_last_fit("1") == 1
    assert store.record_annotation("ANNOTATION_UPDATED", "1", 10, 100, "prelabel-x", [region("a"), region("b")],
                                   3.0, T3) == "stored"
    assert store.record_annotation("ANNOTATION_UPDATED", "1", 10, 100, "prelabel-x", [region("c")], 9.0,
                                   T2) == "stale", "an older version delivered late does not replace the newer one"
    assert [o.region.label for o in store.outcomes("1")] == ["a", "b"]
    assert store.annotations("1") == [("prelabel-x", 3.0)] and store.event_count("1") == 3
    assert store.delete_annotations("ANNOTATIONS_DELETED", "1", [100]) == 1
    assert store.delete_annotations("ANNOTATIONS_DELETED", "1", [100]) == 0 and store.event_count("1") == 4
    assert store.record_annotation("ANNOTATION_UPDATED", "1", 10, 100, "prelabel-x", [region("d")], 1.0,
                                   "2026-11-23T00:00:00Z") == "deleted", "a deleted annotation stays deleted"
    assert store.outcomes("1") == []
    # Without a version (older callers) every call is stored and counted, as before.
    for _ in range(2):
        assert store.record_annotation("ANNOTATION_CREATED", "2", 1, 1, "prelabel-y", [region("a")]) == "stored"
    assert store.event_count("2") == 2 and len(store.outcomes("2")) == 1
    store.close()


def test_store_replaces_reopens_and_keeps_fits(target):
    store = FeedbackStore(target)
    features = {"box_score": 0.4}
    store.record_annotation("ANNOTATION_CREATED", "1", 10, 100, "prelabel-x", [region("a", "deleted", 0.4)], 3.0)
    store.record_annotation("ANNOTATION_UPDATED", "1", 10, 100, "prelabel-x",
                            [RegionOutcome("bbox", "a", Outcome.ACCEPTED, 0.97, 0.4, features, (0.1, 0.1, 0.2, 0.2),
                                           (0.1, 0.1, 0.2, 0.21)), region("a", "added", None)], 5.0)
    store.record_annotation("ANNOTATION_CREATED", "2", 11, 101, "prelabel-y", [region("b")])
    store.close()
    reopened = FeedbackStore(target)
    got = [(s.annotation, s.region.outcome.value, s.region.features, s.region.final_box)
           for s in reopened.outcomes("1")]
    assert got == [(100, "accepted", features, (0.1, 0.1, 0.2, 0.21)), (100, "added", None, None)]
    assert reopened.event_count() == 3 and reopened.event_count("1") == 2
    assert reopened.save_fit("1", {"thresholds": {"a": 0.5}}) < reopened.save_fit("1", {"thresholds": {"a": 0.4}})
    assert reopened.latest_fit("1") == {"thresholds": {"a": 0.4}} and reopened.latest_fit("2") is None
    assert reopened.annotations_since_last_fit("1") == 0
    assert reopened.delete_annotations("ANNOTATIONS_DELETED", "1", [100, 999]) == 1
    assert reopened.outcomes("1") == [] and len(reopened.outcomes("2")) == 1
    reopened.close()


def test_replicas_writing_at_once_agree(target):
    """Four stores (one per replica) on the same database, two threads each; every event is sent twice
    (a redelivery, to another replica) and in two versions; counts and fits agree everywhere."""
    replicas = [FeedbackStore(target) for _ in range(4)]
    statuses: list[str] = []
    lock = threading.Lock()

    def send(worker):
        for annotation in range(60):
            for version, labels in ((T1, ["a"]), (T2, ["a", "b"])):
                for copy in range(2):
                    store = replicas[(worker + copy + annotation) % 4]
                    status = store.record_annotation("ANNOTATION_CREATED", "7", annotation, annotation, "prelabel-x",
                                                     [region(name) for name in labels], 1.0, version)
                    with lock:
                        statuses.append(status)
            if annotation % 20 == worker:
                store.save_fit("7", {"by": worker, "after": annotation})

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses.count("stored") >= 120, "each annotation stored in its first and its second version"
    events = {store.event_count("7") for store in replicas}
    assert events == {120}, "one event per annotation and version, however often and wherever it was delivered"
    for store in replicas:
        outcomes = store.outcomes("7")
        assert len({o.annotation for o in outcomes}) == 60 and len(outcomes) == 120, "the newer version everywhere"
    fits = [store.latest_fit("7") for store in replicas]
    assert fits[0] is not None and all(fit == fits[0] for fit in fits), "every replica reads the same newest fit"
    for store in replicas:
        store.close()


def test_old_sqlite_files_keep_their_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the schema of the store before URLs and versions
        db.executescript("""
        CREATE TABLE events (id INTEGER PRIMARY KEY, received_at REAL NOT NULL, action TEXT NOT NULL,
            project TEXT NOT NULL, task INTEGER, annotation INTEGER);
        CREATE TABLE annotations (project TEXT NOT NULL, annotation INTEGER NOT NULL, task INTEGER NOT NULL,
            model_version TEXT NOT NULL, lead_time REAL, updated_at REAL NOT NULL, PRIMARY KEY (project, annotation));
        CREATE TABLE regions (project TEXT NOT NULL, annotation INTEGER NOT NULL, from_name TEXT NOT NULL,
            label TEXT NOT NULL, outcome TEXT NOT NULL, iou REAL, score REAL, features TEXT, boxes TEXT,
            FOREIGN KEY (project, annotation) REFERENCES annotations (project, annotation) ON DELETE CASCADE);
        CREATE INDEX regions_by_annotation ON regions (project, annotation);
        CREATE TABLE fits (id INTEGER PRIMARY KEY, project TEXT NOT NULL, created_at REAL NOT NULL,
            learned TEXT NOT NULL);
        INSERT INTO events VALUES (1, 1.0, 'ANNOTATION_CREATED', '1', 5, 5), (2, 2.0, 'ANNOTATION_CREATED', '1', 6, 6);
        INSERT INTO annotations VALUES ('1', 5, 5, 'prelabel-old', 4.0, 1.0), ('1', 6, 6, 'prelabel-old', NULL, 2.0);
        INSERT INTO regions VALUES ('1', 5, 'bbox', 'z', 'deleted', NULL, 0.4, NULL, NULL),
            ('1', 5, 'bbox', 'y', 'accepted', 0.99, 0.9, NULL, NULL), ('1', 6, 'bbox', 'x', 'added', NULL, NULL,
            NULL, NULL);
        INSERT INTO fits VALUES (1, '1', 3.0, '{"thresholds": {"z": 0.5}}');
        """)
    store = FeedbackStore(path)
    assert [(o.annotation, o.region.label) for o in store.outcomes("1")] == [(5, "z"), (5, "y"), (6, "x")]
    assert store.event_count() == 2 and store.latest_fit("1") == {"thresholds": {"z": 0.5}}
    assert store.record_annotation("ANNOTATION_UPDATED", "1", 5, 5, "prelabel-new", [region("w")], 1.0, T1) == "stored"
    assert [o.region.label for o in store.outcomes("1")] == ["x", "w"], "cascade still deletes the old regions"
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM regions").fetchone()[0] == 2
    assert FeedbackStore(path).event_count() == 3, "opening a migrated store again changes nothing"


def test_store_locations(tmp_path):
    assert database_url(tmp_path / "a.sqlite3").get_backend_name() == "sqlite"
    assert database_url(f"sqlite:///{tmp_path}/b.sqlite3").database == f"{tmp_path}/b.sqlite3"
    assert database_url("postgres://u:p@db:5432/fb").drivername == "postgresql+psycopg"
    assert database_url("postgresql://u:p@db/fb").drivername == "postgresql+psycopg"
    with pytest.raises(StoreError, match="unsupported feedback database 'mysql'") as info:
        database_url("mysql://u@db/fb")
    assert isinstance(info.value, PrelabelError)
    assert not store_exists(tmp_path / "none.sqlite3") and store_exists("postgresql://u@db/fb")
    store = FeedbackStore(f"sqlite:///{tmp_path}/c.sqlite3")
    assert store.path == tmp_path / "c.sqlite3" and store_exists(f"sqlite:///{tmp_path}/c.sqlite3")
    with pytest.raises(Unavailable, match="cannot open the feedback store postgresql\\+psycopg://u:\\*\\*\\*@"):
        FeedbackStore(f"postgresql://u:secret@127.0.0.1:{free_port()}/fb?connect_timeout=2")
