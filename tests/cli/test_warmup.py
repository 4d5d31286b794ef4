"""`prelabel warmup` converts the configured models ahead of a job; the job that follows converts nothing."""

import os
import subprocess
import sys

import pytest

from batch_data import write_shape_images
from prelabel.cli import main
from prelabel.core.errors import ExitCode

pytest.importorskip("openvino")

MODELS = ["--detector", "random-tiny", "--segmenter", "random-tiny", "--device", "cpu", "--dtype", "fp32",
          "--sam-runtime", "openvino", "--sam-precision", "fp32", "--detector-runtime", "openvino"]
LABELS = ["--labels", "box=red box,disc=green circle"]


def test_warmup_fills_the_cache_and_the_following_batch_converts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRELABEL_RUNTIME_CACHE", str(tmp_path / "cache"))
    write_shape_images(tmp_path / "images", 3, size=(160, 120))
    assert main(["warmup", *MODELS, *LABELS, "--images", str(tmp_path / "images")]) == ExitCode.OK
    printed = capsys.readouterr().out
    assert "SAM encoder random-tiny+openvino: converted in" in printed
    assert "detector random-tiny+openvino at " in printed and printed.count("converted in") == 2, printed
    assert len(list((tmp_path / "cache").glob("openvino/*/image_encoder.xml"))) == 1
    assert len(list((tmp_path / "cache").glob("openvino-detector/*/detector.xml"))) == 1

    job = subprocess.run([sys.executable, "-m", "prelabel.cli", "batch", str(tmp_path / "images"), *MODELS, *LABELS,
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PRELABEL_RUNTIME_CACHE": str(tmp_path / "cache")})
    assert job.returncode == 0, job.stderr[-3000:]
    assert "converted" not in job.stderr and "converting in the background" not in job.stderr, job.stderr[-3000:]
    assert "not converting" not in job.stderr, "the encoder was compiled from the cache at load: nothing to decide"
    assert "OpenVINO detector: compiled" in job.stderr, "the detector's shape came from the cache"

    assert main(["warmup", *MODELS, *LABELS, "--images", str(tmp_path / "images")]) == ExitCode.OK
    again = capsys.readouterr().out
    assert "converted in" not in again and again.count(": cached") == 2, again


def test_warmup_with_nothing_to_convert_says_so(capsys):
    assert main(["warmup", "--detector", "random-tiny", "--segmenter", "random-tiny", "--device", "cpu",
                 "--sam-runtime", "torch", "--detector-runtime", "torch"]) == ExitCode.OK
    assert "nothing to convert" in capsys.readouterr().out


def test_warmup_without_images_in_the_folder_is_a_usage_error(tmp_path):
    assert main(["warmup", *MODELS, "--images", str(tmp_path)]) == ExitCode.USAGE
