"""`prelabel batch` uses the settings it is given: the segmenter runtime, and the review threshold of its
Label Studio output (two bugs of the old per-entry-point model wrappers)."""

import json

import pytest

from batch_data import write_shape_images
from prelabel.cli import main
from prelabel.labelstudio.results import REVIEW_NOTE
from prelabel.models import registry
from prelabel.pipeline.build import forget_loaded_models

MODELS = ["--detector", "random-tiny", "--segmenter", "random-tiny", "--device", "cpu", "--box-threshold", "0.3"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    write_shape_images(folder, 3, size=(160, 120))
    return folder


def batch(images, out, *extra):
    assert main(["batch", str(images), "--labels", "box=red box,disc=green circle", *MODELS, "--out", str(out),
                 "--format", "coco,labelstudio", *extra]) == 0
    return json.loads((out / "coco.json").read_text()), json.loads((out / "labelstudio_tasks.json").read_text())


def test_sam_runtime_int8_is_the_runtime_used_and_in_the_model_version(images, tmp_path, monkeypatch):
    quantized = []
    real = registry.quantize_encoder_int8
    monkeypatch.setattr(registry, "quantize_encoder_int8", lambda model: (quantized.append(model), real(model)))
    forget_loaded_models()  # an int8 segmenter loaded by another test must not hide whether this run builds one
    torch_coco, _ = batch(images, tmp_path / "torch")
    assert quantized == []
    int8_coco, _ = batch(images, tmp_path / "int8", "--sam-runtime", "int8")
    assert len(quantized) == 1, "--sam-runtime int8 quantised the segmenter's image encoder"
    assert int8_coco["info"]["model_version"] != torch_coco["info"]["model_version"]
    checkpoint = (tmp_path / "int8" / "checkpoint.jsonl").read_text().splitlines()
    assert json.loads(checkpoint[0])["header"]["model_version"] == int8_coco["info"]["model_version"]


def test_review_threshold_setting_flags_the_label_studio_output(images, tmp_path, monkeypatch):
    monkeypatch.setenv("PRELABEL_REVIEW_THRESHOLD", "0")
    _, lenient = batch(images, tmp_path / "lenient")
    monkeypatch.setenv("PRELABEL_REVIEW_THRESHOLD", "0.99")
    _, strict = batch(images, tmp_path / "strict")
    results = [item for task in strict for item in task["predictions"][0]["result"]]
    assert results, "random-tiny at box threshold 0.3 finds regions"
    assert all(REVIEW_NOTE in item["meta"]["text"][0] for item in results)
    assert not any("meta" in item for task in lenient for item in task["predictions"][0]["result"])
    # A display cutoff is not part of the model's identity.
    assert strict[0]["predictions"][0]["model_version"] == lenient[0]["predictions"][0]["model_version"]
