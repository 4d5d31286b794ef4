"""Back-pressure (503 + Retry-After), request ids, JSON logs and Prometheus metrics."""

import json
import logging
import threading
import time

import pytest
from image_host import ImageHost, write_random_images
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from prelabel.labelstudio.backend import create_app
from prelabel.server.healthcheck import check
from prelabel.server.limits import ModelGate, Overloaded
from prelabel.server.observability import configure_logging
from prelabel.settings import Settings

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="cat"/></KeyPointLabels></View>"""


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with ImageHost(write_random_images(tmp_path_factory.mktemp("images"), {"a.png": (48, 64)}, seed=1)) as server:
        yield server


def make_client(labeler, host, **settings):
    app = create_app(Settings(detector="random-tiny", segmenter="random-tiny", label_studio_url=host.url,
                              label_studio_api_key=host.token, **settings), labeler)
    return app, app.test_client()


def predict(client, **headers):
    body = {"tasks": [{"id": 1, "data": {"image": "/data/upload/a.png"}}], "label_config": CONFIG}
    return client.post("/predict", json=body, headers=headers)


def metrics(client):
    return {s.name + json.dumps(s.labels, sort_keys=True): s.value
            for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
            for s in family.samples}


def test_gate_bounds_in_flight_and_queue():
    gate = ModelGate(max_in_flight=1, max_queue=1, queue_timeout_s=0.3)
    started = gate.acquire()
    waiter = threading.Thread(target=lambda: gate.release(gate.acquire()))
    waiter.start()
    while gate.waiting != 1:
        time.sleep(0.01)
    with pytest.raises(Overloaded, match="1 requests already waiting") as full:
        gate.acquire()
    assert full.value.retry_after_s >= 1
    gate.release(started)
    waiter.join(2)
    assert (gate.in_flight, gate.waiting, gate.rejected) == (0, 0, 1)
    with gate.hold():
        begun = time.monotonic()
        with pytest.raises(Overloaded, match="within 0.3 s"):
            gate.acquire()
        assert time.monotonic() - begun >= 0.3


def test_busy_server_answers_503_with_retry_after_and_keeps_serving(labeler, host):
    app, client = make_client(labeler, host, max_in_flight=1, max_queue=0)
    gate = app.extensions["prelabel"].gate
    with gate.hold():  # a long prediction holds the only model slot
        busy = predict(client)
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
        assert "busy" in busy.get_json()["error"]
        assert client.get("/health").status_code == 200, "non-model endpoints still answer"
    assert predict(client).status_code == 200
    values = metrics(client)
    assert values['prelabel_model_requests_rejected{}'] == 1
    assert values['prelabel_http_requests_total{"endpoint": "/predict", "method": "POST", "status": "503"}'] == 1


def test_metrics_count_requests_latency_queue_and_cache_hits(labeler, host):
    _, client = make_client(labeler, host)
    for _ in range(3):
        assert predict(client).status_code == 200
    click = {"result": [{"type": "keypointlabels", "value": {"x": 50, "y": 50, "keypointlabels": ["cat"]}}]}
    body = {"tasks": [{"id": 1, "data": {"image": "/data/upload/a.png"}}], "label_config": CONFIG,
            "params": {"context": click}}
    for _ in range(2):  # the second click on the image reuses its embedding
        assert client.post("/predict", json=body).status_code == 200
    values = metrics(client)
    assert values['prelabel_http_requests_total{"endpoint": "/predict", "method": "POST", "status": "200"}'] == 5
    assert values['prelabel_http_request_duration_seconds_count{"endpoint": "/predict"}'] == 5
    assert values['prelabel_model_queue_depth{}'] == 0 and values['prelabel_model_requests_in_flight{}'] == 0
    assert values['prelabel_model_ready{}'] == 1
    cache = labeler.segmenter.cache
    assert values['prelabel_embedding_cache_hits_total{}'] == cache.hits >= 1
    assert values['prelabel_embedding_cache_hit_ratio{}'] == pytest.approx(cache.hits / (cache.hits + cache.misses))
    assert values['prelabel_image_encoder_runs_total{}'] == labeler.segmenter.encoder_calls >= 1
    assert 'prelabel_embedding_store_hits_total{}' not in values, "no store configured: no store counters"


def test_request_ids_in_responses_and_json_logs(labeler, host, capsys):
    _, client = make_client(labeler, host)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("json")
        given = client.get("/health", headers={"X-Request-ID": "ls-req-42"})
        generated = predict(client, **{"X-Request-ID": "bad id with spaces"})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert given.headers["X-Request-ID"] == "ls-req-42"
    new_id = generated.headers["X-Request-ID"]
    assert len(new_id) == 32 and new_id != "bad id with spaces"
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    access = [r for r in records if r["name"] == "prelabel.access"]
    assert [(r["request_id"], r["path"], r["status"]) for r in access] == [("ls-req-42", "/health", 200),
                                                                           (new_id, "/predict", 200)]
    assert all({"time", "level", "message", "duration_ms"} <= set(r) for r in access)


def test_container_healthcheck_sends_the_configured_credentials(labeler, host):
    settings = Settings(detector="random-tiny", segmenter="random-tiny", api_token="tok")
    server = make_server("127.0.0.1", 0, create_app(settings, labeler), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert check(url, settings) == (True, "model_state=ready")
        assert check(url, Settings()) == (False, f"{url}/health answered HTTP 401")
    finally:
        server.shutdown()
    assert check(url, settings, timeout_s=1)[0] is False
