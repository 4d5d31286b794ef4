"""Every acknowledged webhook survives a kill -9 of the server in the middle of a burst."""

import os
import signal
import threading

import requests

from prelabel.feedback.store import FeedbackStore
from prelabel.labelstudio.demo import BackendProcess

BOX = {"from_name": "bbox", "to_name": "image", "type": "rectanglelabels", "original_width": 100,
       "original_height": 100, "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0,
                                         "rectanglelabels": ["cat"]}}
EVENTS = 400


def event(annotation_id):
    return {"action": "ANNOTATION_CREATED", "project": {"id": 3}, "task": {"id": annotation_id},
            "annotation": {"id": annotation_id, "task": annotation_id, "project": 3, "result": [BOX],
                           "prediction": {"model_version": "prelabel-test", "result": [{**BOX, "score": 0.8}]}}}


def test_acknowledged_webhooks_survive_kill_9(tmp_path):
    db = tmp_path / "feedback.sqlite3"
    env = {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny", "PRELABEL_DEVICE": "cpu",
           "PRELABEL_FEEDBACK_DB": str(db)}
    server = BackendProcess(env, tmp_path / "backend.log")
    server.wait_ready()
    acknowledged: list[int] = []
    lock = threading.Lock()

    def send(ids):
        session = requests.Session()
        for i in ids:
            try:
                reply = session.post(f"{server.url}/webhook", json=event(i), timeout=10)
            except requests.RequestException:
                return  # the server is gone
            if reply.status_code == 200 and reply.json()["status"] == "stored":
                with lock:
                    acknowledged.append(i)

    senders = [threading.Thread(target=send, args=(range(k, EVENTS, 4),)) for k in range(4)]
    for thread in senders:
        thread.start()
    while len(acknowledged) < EVENTS // 4 and any(t.is_alive() for t in senders):
        threading.Event().wait(0.01)
    os.killpg(server.proc.pid, signal.SIGKILL)  # no shutdown, no flush: a crash
    for thread in senders:
        thread.join(30)
    server.proc.wait(10)
    assert EVENTS // 4 <= len(acknowledged) < EVENTS, "killed in the middle of the burst"

    restarted = BackendProcess(env, tmp_path / "backend2.log")
    try:
        restarted.wait_ready()
        report = requests.get(f"{restarted.url}/report", params={"project": 3}, timeout=5).json()
    finally:
        restarted.stop()
    stored = {o.annotation for o in FeedbackStore(db).outcomes("3")}
    lost = set(acknowledged) - stored
    print(f"acknowledged {len(acknowledged)} of {EVENTS} before kill -9; stored {len(stored)}; lost {len(lost)}")
    assert not lost
    assert report["annotations"] == len(stored) >= len(acknowledged)
