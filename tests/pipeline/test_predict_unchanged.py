"""``prelabel predict`` gives the regions it gave before the Labeler became the only place that cuts (#34).

``data/predict_before_cut_move.json`` holds, per detector family (random-tiny weights), the command and its output
at the commit named in the file, the last one where every family cut its own candidates. Per-label cuts, the
default cut and Grounding DINO's text threshold were set in gaps of each family's scores on these images (the
smallest distance of any candidate's score to a cut is ``min_margin``), so the comparison holds on any CPU: the
same regions in the same order, scores and boxes equal to their rounding, mask areas within 2 %.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from prelabel.cli import main

REFERENCE = json.loads((Path(__file__).parent / "data" / "predict_before_cut_move.json").read_text(encoding="utf-8"))
REPO = Path(__file__).resolve().parents[2]
TEXT_THRESHOLD_FAMILIES = ("random-tiny", "random-tiny-mm-grounding-dino")  # model_version keeps its text threshold


@pytest.mark.parametrize("detector", sorted(REFERENCE["families"]))
def test_predict_output_is_the_one_before_the_labeler_owned_the_cuts(detector, monkeypatch):
    family = REFERENCE["families"][detector]
    monkeypatch.chdir(REPO)  # the image paths are relative to the repository
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(family["args"]) == 0
    now, before = json.loads(out.getvalue()), family["output"]
    assert len(now["images"]) == len(before["images"]) == 2
    if detector in TEXT_THRESHOLD_FAMILIES:
        assert now["model_version"] == before["model_version"]
    assert sum(len(image["regions"]) for image in before["images"]) > 0
    for image, old in zip(now["images"], before["images"]):
        assert (image["path"], image["image_size"], image["label_names"]) == (old["path"], old["image_size"],
                                                                              old["label_names"])
        assert {k: image["meta"][k] for k in ("detector", "segmenter", "random_weights")} == {
            k: old["meta"][k] for k in ("detector", "segmenter", "random_weights")}
        assert [r["label"] for r in image["regions"]] == [r["label"] for r in old["regions"]]
        for region, ref in zip(image["regions"], old["regions"]):
            assert np.allclose(region["box_xyxy"], ref["box_xyxy"], atol=0.02)
            assert region["score"] == pytest.approx(ref["score"], abs=2e-4)
            assert region["features"] == pytest.approx(ref["features"], abs=2e-3)
            assert region["uncertainty"] == pytest.approx(ref["uncertainty"], abs=2e-3)
            if "mask_area" in ref:
                area = int(mask_utils.area(region["mask_rle"]))
                assert abs(area - ref["mask_area"]) <= max(4, 0.02 * ref["mask_area"])
