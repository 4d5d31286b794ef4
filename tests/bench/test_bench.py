"""``prelabel bench``: the quick run end to end, and the measuring tools it relies on."""

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from prelabel.bench.report import Report, Row
from prelabel.bench.timing import Case, ModelTimer, interleaved, mask_iou, median_ratio
from prelabel.cli import main


def test_quick_bench_prints_the_table_and_writes_json_and_markdown(tmp_path):
    out = tmp_path / "bench"
    sections = ("mainjob,throughput,click,decoder,memory,runtimes,detector_runtimes,half,segmenters,profile,floor,"
                "detectors,video,large_image")
    command = [sys.executable, "-m", "prelabel.cli", "bench", "--quick", "--requests", "10", "--repeats", "1",
               "--sections", sections, "--out", str(out)]
    env = {**os.environ, "PRELABEL_RUNTIME_CACHE": str(tmp_path / "converted")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mix speed-up vs naive" in done.stdout and ("MET" in done.stdout or "MISSED" in done.stdout)
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["environment"]["random_weights"] is True
    assert {row["section"] for row in document["rows"]} == set(sections.split(","))
    for row in document["rows"]:
        assert (row["met"] is None) == (row["target"] is None)
    by_metric = {row["metric"]: row for row in document["rows"]}
    onnx_iou = by_metric["mask IoU vs fp32 torch, onnx encoder"]
    assert onnx_iou["value"] >= 0.98 and onnx_iou["met"] is True, "ONNX Runtime runs the same weights"
    assert 0 <= by_metric["wall time outside the models, realistic mix"]["value"] <= 1
    # runtimes and segmenters share one interleaved timing: the loaded segmenter is timed once for both.
    encoders = document["details"]["encoders"]
    openvino = {"openvino encoder", "openvino bf16 encoder"} if importlib.util.find_spec("openvino") else set()
    assert set(encoders) == {"reference", "int8 encoder", "onnx encoder", "random-tiny-sam2", *openvino}
    assert all(len(seconds) == 1 for seconds in encoders.values())
    # The naive pipeline segmented as many boxes per image as prelabel did: the comparison is like for like.
    boxes = document["details"]["throughput"]["boxes_per_image"]
    assert boxes["naive"] == boxes["ours"]
    # The main job against the naive pipeline, and the floor next to it.
    for count in (5, 25):  # --quick: the mainjob and decoder sections at 5 and 25 regions per image
        assert f"main job speed-up vs naive, {count} regions per image (naive s / prelabel s)" in by_metric
        assert by_metric[f"mask IoU vs transformers, {count} boxes"]["value"] >= 0.98
    assert by_metric["peak RSS rise, prelabel, 25 boxes"]["target"][0] == "<="
    assert by_metric["SAM mask decoder work per region"]["value"] > 0
    assert by_metric["main job time / floor (fp32)"]["target"] == ["<=", 2.0]
    assert by_metric["Grounding DINO work per image"]["value"] > 0 and by_metric["matmul peak, fp32"]["value"] > 0
    assert "cpu_features" in document["environment"]
    assert by_metric["box IoU vs fp32, Grounding DINO bf16"]["note"].count("0 queries with NaN") == 1
    large = by_metric["peak RSS rise, labeling a 64 MP image, 25 regions, --tile 1024"]
    assert large["met"] is True and "full-frame masks would be" in large["note"]
    assert document["details"]["large_image"]["tiles"] == 100
    markdown = out.with_suffix(".md").read_text()
    assert "| throughput | mix speed-up vs naive" in markdown and "### Profile: sam_image_encoder" in markdown


def test_unknown_section_is_a_one_line_user_error(capsys):
    assert main(["bench", "--quick", "--sections", "throughput,warp-drive"]) == 2


def test_interleaving_alternates_the_order_between_repeats():
    order = []
    cases = {"a": Case(lambda r: order.append(("a", r))), "b": Case(lambda r: order.append(("b", r)),
                                                                       setup=lambda r: order.append(("setup-b", r)))}
    times = interleaved(cases, 3)
    assert [name for name, _ in order] == ["a", "setup-b", "b", "setup-b", "b", "a", "a", "setup-b", "b"]
    assert all(len(v) == 3 and min(v) >= 0 for v in times.values())
    assert median_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 4.0]) == 2.0


class _Sleeper(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)
        return self.inner(x) if self.inner is not None else x


def test_model_timer_counts_nested_forwards_once_and_nothing_outside():
    inner = _Sleeper()
    outer = _Sleeper(inner)
    with ModelTimer([outer, inner]) as timer:
        outer(torch.zeros(1))
        time.sleep(0.1)  # outside any model
    assert 0.1 <= timer.seconds < 0.15
    outer(torch.zeros(1))  # hooks are gone after the block
    assert timer.seconds < 0.15


def test_rows_mark_targets_met_or_missed(tmp_path):
    report = Report({"device": "cpu"})
    report.add(Row("s", "ratio", 2.9, "x", (">=", 3.0)), Row("s", "share", 0.04, "share", ("<=", 0.05)),
               Row("s", "info", 1.0, "s"))
    assert [r.met for r in report.rows] == [False, True, None]
    table = report.table()
    assert "MISSED" in table and "MET" in table
    json_path, md_path = report.write(tmp_path / "r")
    assert json.loads(json_path.read_text())["rows"][0]["met"] is False
    assert "| s | ratio | 2.9 x | >= 3 | MISSED |" in md_path.read_text()


@pytest.mark.parametrize(("a", "b", "expected"), [((1, 1, 0, 0), (1, 0, 0, 0), 0.5), ((0, 0), (0, 0), 1.0)])
def test_mask_iou(a, b, expected):
    import numpy as np

    assert mask_iou(np.array(a, bool), np.array(b, bool)) == expected
