"""`prelabel batch` with an OpenVINO SAM encoder not converted yet: a job where the conversion pays off starts it
after its first image and switches over mid-job, with the same regions as PyTorch; a small job never converts."""

import logging

import pytest
from pycocotools.coco import COCO

from batch_data import write_shape_images
from prelabel.bench.timing import mask_iou
from prelabel.cli import main
from prelabel.models import runtimes

pytest.importorskip("openvino")

LABELS = "box=red box|rectangle,disc=green circle"
MODELS = ["--detector", "random-tiny", "--segmenter", "random-tiny", "--device", "cpu", "--dtype", "fp32",
          "--sam-precision", "fp32"]  # the same on every CPU (bf16 where it is native is measured by the bench)


def run(images, out, runtime, cache, monkeypatch):
    monkeypatch.setenv("PRELABEL_RUNTIME_CACHE", str(cache))
    assert main(["batch", str(images), "--labels", LABELS, *MODELS, "--sam-runtime", runtime, "--out", str(out)]) == 0
    coco = COCO(str(out / "coco.json"))
    by_image = {}
    for image in coco.loadImgs(coco.getImgIds()):
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        by_image[image["file_name"]] = [(a["bbox"], a["category_id"], coco.annToMask(a)) for a in annotations]
    return by_image


def test_a_job_that_pays_off_switches_to_openvino_mid_job_with_the_same_regions(tmp_path, monkeypatch, caplog):
    write_shape_images(tmp_path / "images", 6, size=(160, 120))
    reference = run(tmp_path / "images", tmp_path / "torch", "torch", tmp_path / "cache", monkeypatch)
    monkeypatch.setattr(runtimes, "PRIOR_CONVERT_SECONDS_PER_MPARAM", 0.0)  # converting costs nothing here
    started = runtimes.OpenVinoImageEncoder.convert_in_background

    def converted_before_the_next_image(self):  # the switch lands after image 1 whatever this machine's speed
        started(self)
        self.wait(300)

    monkeypatch.setattr(runtimes.OpenVinoImageEncoder, "convert_in_background", converted_before_the_next_image)
    with caplog.at_level(logging.INFO):
        switched = run(tmp_path / "images", tmp_path / "openvino", "openvino", tmp_path / "cache", monkeypatch)
    assert "it encodes from now on" in caplog.text
    assert switched.keys() == reference.keys()
    for name, regions in reference.items():
        assert [(box, label) for box, label, _ in switched[name]] == [(box, label) for box, label, _ in regions], name
        assert all(mask_iou(a, b) >= 0.98 for (_, _, a), (_, _, b) in zip(regions, switched[name], strict=True)), name


def test_a_small_job_converts_nothing(tmp_path, caplog, monkeypatch):
    write_shape_images(tmp_path / "images", 3, size=(160, 120))
    with caplog.at_level(logging.INFO):
        run(tmp_path / "images", tmp_path / "out", "openvino", tmp_path / "cache", monkeypatch)
    assert "not converting" in caplog.text
    assert not list((tmp_path / "cache").glob("openvino/*/*.xml")), "no conversion started"
