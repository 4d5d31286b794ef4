"""Auth and safe image fetching: credentials, webhook secret, host allowlist, address checks, limits, local roots."""

import base64
import logging

import numpy as np
import pytest
from image_host import ImageHost
from PIL import Image

from prelabel.core.fetch import FetchPolicy, FetchRefused
from prelabel.labelstudio.backend import create_app
from prelabel.labelstudio.client import LabelStudioAccess
from prelabel.labelstudio.task_images import ImageFetchError, TaskImageFetcher
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/></RectangleLabels></View>"""
MODELS = {"detector": "random-tiny", "segmenter": "random-tiny", "box_threshold": 0.3}


@pytest.fixture(scope="module")
def labeler():
    return build_labeler(Settings(detector="random-tiny", segmenter="", device="cpu"))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(np.zeros((400, 400, 3), dtype=np.uint8)).save(root / "big.png")
    (root / "page.html").write_text("<html>not an image</html>")
    (root / "sub").mkdir()
    (root / "sub" / "c.png").write_bytes((root / "a.png").read_bytes())
    return root


@pytest.fixture(scope="module")
def host(root):
    with ImageHost(root) as server:
        yield server


def fetcher(host, **settings):
    return TaskImageFetcher.from_settings(Settings(label_studio_url=host.url, **settings))


def fetch(fetcher_, url, host):
    return fetcher_.fetch(url, LabelStudioAccess(host.url, host.token))


# --- authentication -----------------------------------------------------------------------------------------


def predict_body(host):
    return {"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}], "label_config": CONFIG}


def test_without_credentials_nothing_runs(labeler, host):
    settings = Settings(**MODELS, label_studio_url=host.url, label_studio_api_key=host.token,
                        basic_auth_user="ls", basic_auth_pass="pw", api_token="tok-123")
    client = create_app(settings, labeler).test_client()
    seen = len(host.requests)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic bHM6d3Jvbmc="}):
        response = client.post("/predict", json=predict_body(host), headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
        for path in ("/health", "/metrics", "/openapi.json", "/versions"):
            assert client.get(path, headers=headers).status_code == 401
    assert len(host.requests) == seen, "no image was fetched for a refused request"
    basic = "Basic " + base64.b64encode(b"ls:pw").decode()
    for good in (basic, "Bearer tok-123"):
        response = client.post("/predict", json=predict_body(host), headers={"Authorization": good})
        assert response.status_code == 200 and response.get_json()["results"][0]["result"]
    assert client.get("/metrics", headers={"Authorization": "Bearer tok-123"}).status_code == 200


def test_webhook_secret_and_secrets_never_logged(labeler, caplog, tmp_path):
    settings = Settings(**MODELS, api_token="tok-123", webhook_secret="hook-456", label_studio_api_key="key-789",
                        feedback_db=str(tmp_path / "fb.sqlite3"))
    client = create_app(settings, labeler).test_client()
    event = {"action": "PROJECT_UPDATED", "project": {"id": 1}}
    with caplog.at_level(logging.DEBUG):
        assert client.post("/webhook", json=event).status_code == 401
        assert client.post("/webhook", json=event, headers={"X-Prelabel-Webhook-Secret": "nope"}).status_code == 401
        ok = client.post("/webhook", json=event, headers={"X-Prelabel-Webhook-Secret": "hook-456"})
        assert ok.status_code == 200, "webhooks need the secret, not the API token"
        client.get("/health?token=tok-123", headers={"Authorization": "Bearer tok-123"})
    logged = caplog.text + repr(settings.redacted())
    assert not any(secret in logged for secret in ("tok-123", "hook-456", "key-789"))


# --- image fetching ------------------------------------------------------------------------------------------


def test_label_studio_host_is_allowed_even_on_loopback_and_others_are_not(host):
    fetcher_ = fetcher(host)
    assert fetch(fetcher_, "/data/upload/1/a.png", host).shape == (30, 40, 3)
    with pytest.raises(FetchRefused, match="PRELABEL_ALLOWED_HOSTS"):
        fetch(fetcher_, f"http://localhost:{host.url.rsplit(':', 1)[1]}/a.png", host)
    with pytest.raises(FetchRefused, match="PRELABEL_ALLOWED_HOSTS"):
        fetch(fetcher_, "http://169.254.169.254/latest/meta-data/", host)


def test_only_label_studios_origin_is_trusted_not_other_ports_of_its_host(root, host):
    """LABEL_STUDIO_URL=http://127.0.0.1:PORT must not open 127.0.0.1's other services (blind SSRF)."""
    with ImageHost(root) as other:  # another service on Label Studio's host
        for url in (f"{other.url}/a.png", f"{host.url}/redirect?to={other.url}/a.png"):
            with pytest.raises(FetchRefused, match="LABEL_STUDIO_URL's origin"):
                fetch(fetcher(host), url, host)
        assert other.requests == [], "nothing reached the other service"
    assert fetch(fetcher(host), f"{host.url}/a.png", host).shape == (30, 40, 3)


def test_allowed_hosts_still_refuse_private_addresses_unless_allowed(host):
    url = f"http://localhost:{host.url.rsplit(':', 1)[1]}/a.png"
    with pytest.raises(FetchRefused, match="non-public address"):
        fetch(fetcher(host, allowed_hosts="localhost"), url, host)
    assert fetch(fetcher(host, allowed_hosts="localhost", allow_private_networks=True), url, host).shape[:2] == (30, 40)
    with pytest.raises(FetchRefused, match="non-public address"):
        FetchPolicy(allowed_hosts=("*",)).check_url("http://[::ffff:10.0.0.1]/x.png")


def test_redirects_are_checked_hop_by_hop(host):
    port = host.url.rsplit(":", 1)[1]
    for target in (f"http://localhost:{port}/a.png", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(FetchRefused):
            fetch(fetcher(host), f"{host.url}/redirect?to={target}", host)
    assert fetch(fetcher(host), f"{host.url}/redirect?to={host.url}/a.png", host).shape == (30, 40, 3)
    loop = f"{host.url}/redirect?to={host.url}/redirect?to={host.url}/a.png"
    with pytest.raises(ImageFetchError, match="TooManyRedirects"):
        fetch(fetcher(host, max_redirects=1), loop, host)


class RebindingPolicyDouble(FetchPolicy):
    """A test double whose pre-connection DNS check passes, as a rebinding DNS server would make it."""

    def check_url(self, url: str) -> None:
        pass


def test_the_connected_address_is_checked_again(host):
    fetcher_ = TaskImageFetcher(policy=RebindingPolicyDouble(allowed_hosts=("*",)))
    with pytest.raises(FetchRefused, match="127.0.0.1"):
        fetcher_.fetch(f"{host.url}/a.png", None)


def test_size_content_type_and_pixel_limits(host):
    with pytest.raises(ImageFetchError, match="larger than 100 bytes"):
        fetch(fetcher(host, max_image_bytes=100), "/a.png", host)
    with pytest.raises(ImageFetchError, match="Content-Type text/html"):
        fetch(fetcher(host), "/page.html", host)
    with pytest.raises(ImageFetchError, match="over the limit of 10,000 \\(raise PRELABEL_MAX_PIXELS"):
        fetch(fetcher(host, max_pixels=10_000), "/big.png", host)


def test_local_files_are_confined_to_the_roots(root, host):
    fetcher_ = fetcher(host, local_roots=str(root / "sub"))
    assert fetch(fetcher_, "/data/local-files/?d=c.png", host).shape == (30, 40, 3)
    assert fetch(fetcher_, f"file://{root}/sub/c.png", host).shape == (30, 40, 3)
    for url in ("/data/local-files/?d=../a.png", f"file://{root}/a.png", "/data/local-files/?d=/etc/passwd",
                "file:///etc/passwd"):
        with pytest.raises(FetchRefused, match="PRELABEL_LOCAL_ROOTS"):
            fetch(fetcher_, url, host)
    with pytest.raises(FetchRefused, match="not set"):
        fetch(fetcher(host), f"file://{root}/sub/c.png", host)


def test_check_address_classifies_addresses():
    policy = FetchPolicy(allowed_hosts=("*",))
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fe80::1%eth0", "0.0.0.0"):
        with pytest.raises(FetchRefused):
            policy.check_address(("https", "example.org", 443), address)
    policy.check_address(("https", "example.org", 443), "93.184.216.34")
    FetchPolicy(trusted_origins=frozenset({("http", "ls", 80)})).check_address(("http", "ls", 80), "10.0.0.5")


def test_a_hostname_sent_to_setup_is_not_trusted_for_fetching(labeler, host):
    client = create_app(Settings(**MODELS), labeler).test_client()
    setup = {"project": "7.1", "schema": CONFIG, "hostname": host.url, "access_token": host.token}
    assert client.post("/setup", json=setup).status_code == 200
    body = {**predict_body(host), "project": "7.1"}
    item = client.post("/predict", json=body).get_json()["results"][0]
    assert item["result"] == [] and "PRELABEL_ALLOWED_HOSTS" in item["error"]
