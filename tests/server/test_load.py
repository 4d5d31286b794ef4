"""The loopback load test (benchmarks/load_test.py), small: no errors besides 503s, bounded RSS, graceful stop."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_small_load_run_has_no_errors_bounded_memory_and_a_graceful_shutdown(tmp_path):
    """Two model calls at a time: concurrent predictions and clicks on one Labeler must not fail."""
    out = tmp_path / "load.json"
    command = [sys.executable, str(REPO / "benchmarks" / "load_test.py"), "--clients", "6", "--requests", "3",
               "--rounds", "2", "--max-in-flight", "2", "--max-queue", "2", "--time-limit", "120", "--json", str(out)]
    subprocess.run(command, check=True, timeout=400)
    report = json.loads(out.read_text())
    assert report["requests_sent"] == 36
    assert report["errors"] == 0 and set(report["statuses"]) <= {"200", "503"}
    assert report["statuses"].get("200", 0) >= 6, "back-pressure must not refuse everything"
    assert report["latency_predict"]["p50_ms"] is not None and report["latency_click"]["p50_ms"] is not None
    assert report["rss_delta_mb"] < 150 and report["rss_delta_last_round_mb"] < 30, "memory must not keep growing"
    graceful = report["graceful_shutdown"]
    assert graceful["status"] == 200 and graceful["tasks_answered"] == graceful["tasks_sent"]
