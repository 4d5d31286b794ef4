"""The code has no unused or undefined names and sorted imports (ruff's pyflakes and isort rules)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F,I", "backend", "tests", "benchmarks",
                             "cvat_serverless"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
