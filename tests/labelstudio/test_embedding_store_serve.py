"""The embedding store between real ``prelabel serve`` processes: an image pre-labeled (or batch-labeled) by one
process is clicked in another, or after a restart, without running the image encoder.

Each server is its own process with its own memory, as gunicorn workers and replicas are; they share only the
store folder, which ``prelabel serve`` puts beside the runtime cache by default.
"""

import json
import statistics
import time

import pytest
import requests
from image_host import ImageHost, write_random_images
from prometheus_client.parser import text_string_to_metric_families

from prelabel.cli import main
from prelabel.labelstudio.demo import BackendProcess
from prelabel.models.registry import load_segmenter

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels>
<BrushLabels name="brush" toName="image"><Label value="cat"/></BrushLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="cat"/></KeyPointLabels></View>"""
PRELABELED = [f"p{i}.png" for i in range(6)]
BATCHED = [f"b{i}.png" for i in range(2)]


def task(name: str) -> dict:
    return {"id": 1, "data": {"image": f"/data/upload/{name}"}}


def click(server: BackendProcess, name: str) -> float:
    """One smart-keypoint click on ``name``; its wall-clock time in seconds."""
    context = {"result": [{"type": "keypointlabels", "is_positive": True, "original_width": 320,
                           "original_height": 240, "from_name": "kp", "to_name": "image",
                           "value": {"x": 40.0, "y": 55.0, "width": 0.5, "keypointlabels": ["cat"]}}]}
    start = time.perf_counter()
    reply = requests.post(f"{server.url}/predict", timeout=60,
                          json={"tasks": [task(name)], "label_config": CONFIG, "params": {"context": context}})
    seconds = time.perf_counter() - start
    assert reply.status_code == 200, reply.text
    assert any(r["type"] == "brushlabels" for r in reply.json()["results"][0]["result"]), reply.text
    return seconds


def counters(server: BackendProcess) -> dict[str, float]:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith(("prelabel_image_encoder", "prelabel_embedding_store"))}


@pytest.fixture()
def env(tmp_path):
    (tmp_path / "images").mkdir()
    images = write_random_images(tmp_path / "images", {name: (240, 320) for name in PRELABELED + BATCHED}, seed=3)
    with ImageHost(images) as host:
        yield {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny", "PRELABEL_DEVICE": "cpu",
               "PRELABEL_DTYPE": "fp32", "PRELABEL_SAM_RUNTIME": "torch", "PRELABEL_LABELS": "",
               "PRELABEL_CONFIG": "", "PRELABEL_EMBEDDING_STORE": "auto", "PRELABEL_LOG_FORMAT": "text",
               "PRELABEL_RUNTIME_CACHE": str(tmp_path / "cache"), "LABEL_STUDIO_URL": host.url,
               "LABEL_STUDIO_API_KEY": host.token, "PRELABEL_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")}


def started(env: dict, log) -> BackendProcess:
    server = BackendProcess(env, log)
    server.wait_ready(timeout=180)
    return server


def test_clicks_in_another_process_after_a_restart_and_after_batch_run_no_encoder(env, tmp_path, monkeypatch):
    first = started(env, tmp_path / "first.log")
    try:
        reply = requests.post(f"{first.url}/predict", timeout=120,
                              json={"tasks": [task(name) for name in PRELABELED], "label_config": CONFIG})
        assert reply.status_code == 200 and all("result" in r for r in reply.json()["results"]), reply.text
        assert counters(first)["prelabel_image_encoder_runs_total"] == len(PRELABELED)
        second = started(env, tmp_path / "second.log")
    finally:
        first.stop()
    try:
        # First click on each image in the second process (store hit), then the same click again (cached).
        pairs = [(click(second, name), click(second, name)) for name in PRELABELED]
        seen = counters(second)
    finally:
        second.stop()
    assert seen["prelabel_image_encoder_runs_total"] == 0, seen
    assert seen["prelabel_embedding_store_hits_total"] == len(PRELABELED), seen
    assert len(list((tmp_path / "cache" / "embeddings").rglob("*.safetensors"))) == len(PRELABELED), \
        "prelabel serve keeps its store beside the runtime cache by default"
    # How long the first click takes next to a cached one is `prelabel bench --sections click`'s to measure ("first
    # click from the store / cached click" <= 1.05, over many interleaved pairs on full-size models): six HTTP
    # round trips here are too few to time on a shared 2-core machine. This is the number, for the log only.
    from_store = statistics.median(first for first, _ in pairs)
    cached = statistics.median(again for _, again in pairs)
    print(f"click on a pre-labeled image in another process: {from_store * 1000:.1f} ms (store), "
          f"{cached * 1000:.1f} ms (cached): {json.dumps(pairs)}")

    # A dataset batch-labeled overnight, then a restarted server: no encoder for either kind of image.
    for name, value in env.items():  # the same models, runtime and store as the servers
        monkeypatch.setenv(name, value)
    batch_folder = tmp_path / "overnight"
    batch_folder.mkdir()
    for name in BATCHED:
        (batch_folder / name).write_bytes((tmp_path / "images" / name).read_bytes())
    try:
        assert main(["batch", str(batch_folder), "--labels", "cat", "--out", str(tmp_path / "out"),
                     "--store-embeddings"]) == 0
    finally:
        load_segmenter("random-tiny", device="cpu").use_store(None, 0, "torch")  # shared by later tests
    restarted = started(env, tmp_path / "restarted.log")
    try:
        for name in PRELABELED[:2] + BATCHED:
            click(restarted, name)
        seen = counters(restarted)
    finally:
        restarted.stop()
    assert seen["prelabel_image_encoder_runs_total"] == 0, seen
    assert seen["prelabel_embedding_store_hits_total"] == 4, seen
