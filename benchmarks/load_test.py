"""Load test of the ML backend on loopback: N concurrent clients, auto pre-annotation and interactive clicks.

Starts ``prelabel serve`` (gunicorn, gthread) with random-tiny models on a free 127.0.0.1 port, reading the
test images from a local root (as Label Studio local storage does), warms it up, then lets ``--clients``
threads each send ``--requests`` requests (bounded by ``--time-limit`` seconds): a mix of ``/predict`` on one
task and smart-tool clicks, in ``--rounds`` equal rounds. It reports p50/p99 latency per kind, the error rate
(anything but 200 and the deliberate 503 back-pressure), the 503 count, the server's RSS before the load and
after each round (a leak keeps growing round after round; allocator warm-up does not), and finally stops the
server with SIGTERM while a request is in flight to check that the request still completes.

    python benchmarks/load_test.py --clients 16 --requests 30 --rounds 3 --json out/load.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from prelabel.labelstudio.demo import BackendProcess

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="bbox" toName="image"><Label value="cat"/><Label value="dog"/></RectangleLabels>
<PolygonLabels name="poly" toName="image"><Label value="cat"/><Label value="dog"/></PolygonLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="cat"/></KeyPointLabels>
</View>"""


def write_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    """Random RGB images of a few sizes; returns their Label Studio local-files URLs."""
    rng = np.random.default_rng(seed)
    urls = []
    for i in range(count):
        height, width = [(240, 320), (320, 240), (256, 256)][i % 3]
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        urls.append(f"/data/local-files/?d=img{i}.png")
    return urls


def predict_body(url: str, task_id: int) -> dict[str, Any]:
    return {"tasks": [{"id": task_id, "data": {"image": url}}], "label_config": CONFIG, "project": "1.1",
            "params": {"context": None}}


def click_body(url: str, task_id: int, rng: random.Random) -> dict[str, Any]:
    point = {"type": "keypointlabels", "is_positive": True, "from_name": "kp", "to_name": "image",
             "value": {"x": rng.uniform(5, 95), "y": rng.uniform(5, 95), "keypointlabels": ["cat"]}}
    return {**predict_body(url, task_id), "params": {"context": {"result": [point]}}}


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children (gunicorn master + workers), in MiB."""
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 1024**2


def metric(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def client_loop(url: str, urls: list[str], count: int, deadline: float, click_ratio: float,
                seed: int) -> list[tuple[str, int, float]]:
    """One client: ``count`` requests (or until ``deadline``); returns (kind, status, seconds) per request."""
    rng = random.Random(seed)
    out = []
    with requests.Session() as session:
        for i in range(count):
            if time.monotonic() > deadline:
                break
            kind = "click" if rng.random() < click_ratio else "predict"
            image = rng.choice(urls)
            body = click_body(image, i, rng) if kind == "click" else predict_body(image, i)
            started = time.perf_counter()
            try:
                response = session.post(f"{url}/predict", json=body, timeout=120)
                status = response.status_code
                if status == 200 and "result" not in response.json()["results"][0]:
                    status = -2  # a per-task error inside a 200: counts as an error
            except requests.RequestException:
                status = -1
            out.append((kind, status, time.perf_counter() - started))
            if status == 503:  # back off as told, briefly
                time.sleep(min(float(response.headers.get("Retry-After", 1)), 1.0))
    return out


def percentiles(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None}
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    return {"p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1)}


def graceful_stop(backend: BackendProcess, urls: list[str]) -> dict[str, Any]:
    """SIGTERM the server while a several-task request runs; that request must still complete."""
    outcome: dict[str, Any] = {}

    def long_request() -> None:
        body = {**predict_body(urls[0], 0), "tasks": [{"id": i, "data": {"image": u}} for i, u in enumerate(urls)]}
        try:
            response = requests.post(f"{backend.url}/predict", json=body, timeout=120)
            outcome["status"] = response.status_code
            outcome["tasks_answered"] = sum("result" in r for r in response.json()["results"])
        except requests.RequestException as exc:
            outcome["status"] = f"failed: {exc.__class__.__name__}"

    thread = threading.Thread(target=long_request)
    thread.start()
    wait_until(lambda: metric(backend.url, "prelabel_model_requests_in_flight") >= 1, 30)
    started = time.monotonic()
    backend.stop(grace=60)
    thread.join(60)
    return {"tasks_sent": len(urls), **outcome, "shutdown_s": round(time.monotonic() - started, 2)}


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="prelabel-load-") as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        urls = write_images(images, args.images)
        env = {"PRELABEL_DETECTOR": "random-tiny", "PRELABEL_SEGMENTER": "random-tiny", "PRELABEL_DEVICE": "cpu",
               "PRELABEL_BOX_THRESHOLD": "0.3", "PRELABEL_LABELS": "", "PRELABEL_CONFIG": "",
               "PRELABEL_LOCAL_ROOTS": str(images), "PRELABEL_MAX_IN_FLIGHT": str(args.max_in_flight),
               "PRELABEL_MAX_QUEUE": str(args.max_queue), "PRELABEL_QUEUE_TIMEOUT_S": str(args.queue_timeout),
               "PRELABEL_LOG_FORMAT": "json"}
        backend = BackendProcess(env, Path(tmp) / "backend.log")
        try:
            backend.wait_ready(timeout=300)
            with requests.Session() as session:  # warm-up: every image once each way, so caches are filled
                for i, url in enumerate(urls):
                    for body in (predict_body(url, i), click_body(url, i, random.Random(i))):
                        session.post(f"{backend.url}/predict", json=body, timeout=120).raise_for_status()
            rss = [rss_mb(backend.proc.pid)]
            deadline = time.monotonic() + args.time_limit
            started = time.perf_counter()
            samples = []
            for round_ in range(args.rounds):  # equal rounds: memory that keeps growing round after round leaks
                with ThreadPoolExecutor(args.clients) as pool:
                    jobs = [pool.submit(client_loop, backend.url, urls, args.requests, deadline, args.click_ratio,
                                        round_ * args.clients + seed) for seed in range(args.clients)]
                    samples += [sample for job in jobs for sample in job.result()]
                rss.append(rss_mb(backend.proc.pid))
            wall = time.perf_counter() - started
            hit_ratio = metric(backend.url, "prelabel_embedding_cache_hit_ratio")
            graceful = graceful_stop(backend, urls)
        finally:
            backend.stop()
    statuses = Counter(status for _, status, _ in samples)
    errors = sum(n for status, n in statuses.items() if status not in (200, 503))
    report: dict[str, Any] = {
        "models": "random-tiny (random weights: timings of the real architectures, scaled down)",
        "clients": args.clients, "requests_sent": len(samples), "wall_s": round(wall, 2),
        "throughput_rps": round(len(samples) / wall, 2) if wall else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors, "error_rate": round(errors / len(samples), 4) if samples else None,
        "rejected_503": statuses.get(503, 0),
        "latency_all_ok": percentiles([t for _, s, t in samples if s == 200]),
        **{f"latency_{kind}": percentiles([t for k, s, t in samples if k == kind and s == 200])
           for kind in ("predict", "click")},
        "rss_before_mb": round(rss[0], 1), "rss_after_mb": round(rss[-1], 1),
        "rss_delta_mb": round(rss[-1] - rss[0], 1), "rss_after_each_round_mb": [round(r, 1) for r in rss[1:]],
        "rss_delta_last_round_mb": round(rss[-1] - rss[-2], 1), "embedding_cache_hit_ratio": round(hit_ratio, 3),
        "graceful_shutdown": graceful,
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=25, help="per client and round")
    parser.add_argument("--rounds", type=int, default=2, help="equal rounds, RSS measured after each")
    parser.add_argument("--time-limit", type=float, default=300, help="seconds for the load phase")
    parser.add_argument("--click-ratio", type=float, default=0.5)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--max-in-flight", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--queue-timeout", type=float, default=30)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
