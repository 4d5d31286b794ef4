"""Property-based fuzzing of every endpoint from the server's own OpenAPI document (schemathesis + hypothesis).

Schema-conforming and schema-violating requests (schemathesis' positive and negative modes), plus raw
garbage (random bytes, content types, methods, paths, auth headers): no 5xx but a deliberate 503, responses
that conform to the document, and a server that still answers a valid request afterwards.
"""

import base64
import json

import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_host import ImageHost, write_random_images
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from prelabel.labelstudio.backend import create_app
from prelabel.server.openapi import openapi_document
from prelabel.settings import Settings

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels></View>"""
EXAMPLES = {GenerationMode.POSITIVE: 120, GenerationMode.NEGATIVE: 80}  # per operation (GETs exhaust at 1)
RAW_EXAMPLES = 300
FUZZ = settings(deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with ImageHost(write_random_images(tmp_path_factory.mktemp("images"), {"a.png": (32, 48)}, seed=2)) as server:
        yield server


@pytest.fixture()
def subnormal_floats():
    """Loading models turns on flush-to-zero in this thread, where hypothesis cannot generate floats."""
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(True)  # as every model load leaves it


def check_status(response) -> None:
    """No server error, except a deliberate 503 that says when to retry."""
    assert response.status_code < 500 or (response.status_code == 503 and "Retry-After" in response.headers), (
        f"{response.status_code}: {response.text[:300]}")


def assert_still_serving(client, host) -> None:
    body = {"tasks": [{"id": 1, "data": {"image": "/data/upload/a.png"}}], "label_config": CONFIG}
    response = client.post("/predict", json=body, headers={"Authorization": "Bearer fuzz-token"})
    assert response.status_code == 200 and response.get_json()["results"][0]["result"]


def test_every_route_is_documented(labeler):
    app = create_app(Settings(detector="random-tiny", segmenter="random-tiny"), labeler)
    routes = {(rule.rule, method.lower()) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in openapi_document()["paths"].items() for method in item}
    assert routes == documented


def schema_fuzz(app) -> int:
    """Every operation of the document in schemathesis' positive and negative modes; returns requests sent."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the document's own path; the raw fuzzing requests it
    assert {op.path for op in operations} == set(openapi_document()["paths"]) - {"/openapi.json"}
    sent = 0
    for operation in operations:
        for mode, examples in EXAMPLES.items():
            if mode.is_negative and not operation.body and not operation.query:
                continue  # nothing to break in a bare GET: the raw fuzzing covers those

            @settings(FUZZ, max_examples=examples)
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case) -> None:
                nonlocal sent
                response = case.call()
                sent += 1
                check_status(response)
                case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                         response_schema_conformance])

            fuzz()
    return sent


JSON_KEYS = ["tasks", "label_config", "params", "context", "result", "data", "image", "schema", "project", "action"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(JSON_KEYS), inner, max_size=4),
    max_leaves=12,
)

IMAGE_URLS = ["/data/upload/a.png", "/data/local-files/?d=a.png", "file:///etc/passwd", "s3://bucket/a.png",
              "http://169.254.169.254/latest/meta-data/", "http://[::1]/a.png", "gopher://x", "", "//evil/a.png"]
# Predict requests with a valid label config and fuzzed tasks and smart-tool context: they reach the image
# fetcher and the interactive path instead of stopping at the label config.
PREDICT_BODIES = st.fixed_dictionaries({
    "tasks": st.lists(st.fixed_dictionaries({"id": st.integers(), "data": st.dictionaries(
        st.sampled_from(["image", "text"]), st.sampled_from(IMAGE_URLS) | JSON_VALUES, max_size=2)}), max_size=3),
    "label_config": st.just(CONFIG),
    "params": st.fixed_dictionaries({"context": st.none() | st.fixed_dictionaries({"result": st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["keypointlabels", "rectanglelabels", "x"]),
                               "is_positive": st.booleans(), "value": JSON_VALUES}), max_size=3)})}),
})


def raw_fuzz(client) -> int:
    """Garbage bodies, content types, methods, paths and auth headers; returns requests sent."""
    paths = list(openapi_document()["paths"]) + ["/nope", "/predict/../setup", "/%00", "/webhook?x=%ff"]
    good = ["Bearer fuzz-token", "Basic " + base64.b64encode(b"ls:pw").decode(), "hook"]
    sent = 0

    @settings(FUZZ, max_examples=RAW_EXAMPLES)
    @given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
           path=st.sampled_from(paths),
           body=st.one_of(st.binary(max_size=512), st.text(max_size=256).map(str.encode),
                          (JSON_VALUES | PREDICT_BODIES).map(lambda value: json.dumps(value).encode())),
           content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                         "multipart/form-data", "application/json; charset=latin-1", None]),
           authorization=st.one_of(st.sampled_from(good), st.text(st.characters(codec="ascii"), max_size=40)),
           request_id=st.text(st.characters(codec="ascii"), max_size=80))
    def fuzz(method, path, body, content_type, authorization, request_id) -> None:
        nonlocal sent
        headers = {"Authorization": authorization, "X-Request-ID": request_id,
                   "X-Prelabel-Webhook-Secret": authorization}
        response = client.open(path, method=method, data=body, content_type=content_type,
                               headers={k: v for k, v in headers.items() if v.isprintable()})
        sent += 1
        check_status(response)

    fuzz()
    return sent


def test_fuzzing_over_1000_requests_finds_no_server_error(labeler, host, subnormal_floats, tmp_path):
    base = dict(detector="random-tiny", segmenter="random-tiny", label_studio_url=host.url,
                label_studio_api_key=host.token, box_threshold=0.3, feedback_db=str(tmp_path / "fb.sqlite3"))
    open_app = create_app(Settings(**base), labeler)
    guarded = create_app(Settings(**base, api_token="fuzz-token", basic_auth_user="ls", basic_auth_pass="pw",
                                  webhook_secret="hook"), labeler).test_client()
    schema_sent = schema_fuzz(open_app)
    raw_sent = raw_fuzz(guarded)
    print(f"fuzzed requests: {schema_sent} from the OpenAPI document + {raw_sent} raw = {schema_sent + raw_sent}")
    assert schema_sent + raw_sent >= 1000
    assert_still_serving(guarded, host)
    assert_still_serving(open_app.test_client(), host)
