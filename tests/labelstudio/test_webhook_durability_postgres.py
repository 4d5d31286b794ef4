"""Two backend replicas share one real PostgreSQL feedback store: every webhook is delivered twice (to both, as a
redelivery would be), one replica is killed -9 in the middle of the burst and its senders fail over to the other
(as a load balancer would); nothing acknowledged is lost and nothing is counted twice."""

import os
import signal
import threading

import requests

from prelabel.feedback.store import FeedbackStore
from prelabel.labelstudio.demo import BackendProcess

BOX = {"from_name": "bbox", "to_name": "image", "type": "rectanglelabels", "original_width": 100,
       "original_height": 100, "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0,
                                         "rectanglelabels": ["cat"]}}
EVENTS = 300


def event(annotation_id):
    return {"action": "ANNOTATION_CREATED", "project": {"id": 3}, "task": {"id": annotation_id},
            "annotation": {"id": annotation_id, "task": annotation_id, "project": 3, "result": [BOX],
                           "updated_at": f"2026-11-22T21:{annotation_id // 60:02d}:{annotation_id % 60:02d}.5Z",
                           "prediction": {"model_version": "prelabel-test", "result": [{**BOX, "score": 0.8}]}}}


def test_two_replicas_on_postgres_survive_kill_9_without_double_counting(tmp_path, postgres_url):
    env = {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny", "PRELABEL_DEVICE": "cpu",
           "PRELABEL_FEEDBACK_DB": postgres_url}
    replicas = [BackendProcess(env, tmp_path / f"backend{i}.log") for i in range(2)]
    for replica in replicas:
        replica.wait_ready()
    victim, survivor = replicas
    acknowledged: set[int] = set()
    replies: list[str] = []
    lock = threading.Lock()

    def post(session, server, i):
        reply = session.post(f"{server.url}/webhook", json=event(i), timeout=10)
        assert reply.status_code == 200, reply.text
        with lock:
            replies.append(reply.json()["status"])
            if reply.json()["status"] in ("stored", "duplicate"):
                acknowledged.add(i)

    def send(ids, first):
        session = requests.Session()
        for i in ids:
            for server in (first, survivor if first is victim else victim):  # each event to both replicas
                try:
                    post(session, server, i)
                except requests.RequestException:  # the victim is gone: the load balancer sends it on
                    post(session, survivor, i)

    senders = [threading.Thread(target=send, args=(range(k, EVENTS, 4), replicas[k % 2])) for k in range(4)]
    try:
        for thread in senders:
            thread.start()
        while len(acknowledged) < EVENTS // 4 and any(t.is_alive() for t in senders):
            threading.Event().wait(0.01)
        os.killpg(victim.proc.pid, signal.SIGKILL)  # no shutdown, no flush: a crash
        victim.proc.wait(10)
        killed_at = len(acknowledged)
        for thread in senders:
            thread.join(120)
        assert EVENTS // 4 <= killed_at < EVENTS, "killed in the middle of the burst"
        restarted = BackendProcess(env, tmp_path / "backend-restarted.log")
        restarted.wait_ready()
        try:
            reports = [requests.get(f"{server.url}/report", params={"project": 3}, timeout=10).json()
                       for server in (survivor, restarted)]
        finally:
            restarted.stop()
    finally:
        for replica in replicas:
            replica.stop()
    store = FeedbackStore(postgres_url)
    stored = {o.annotation for o in store.outcomes("3")}
    print(f"killed one replica after {killed_at} of {EVENTS} acknowledged; {len(replies)} replies "
          f"({replies.count('duplicate')} duplicates); stored {len(stored)}; events {store.event_count('3')}")
    assert acknowledged == set(range(EVENTS)), "the survivor took over every event"
    assert stored == acknowledged, "nothing acknowledged was lost"
    assert store.event_count("3") == EVENTS, "each event counted once, however often it was delivered"
    # A write the victim committed but could not answer is retried on the survivor: "duplicate", not stored twice.
    assert replies.count("stored") <= EVENTS and set(replies) <= {"stored", "duplicate"}
    assert reports[0] == reports[1] and reports[0]["annotations"] == EVENTS, "both replicas report the same"
    store.close()
