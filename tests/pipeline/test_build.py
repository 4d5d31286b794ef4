"""build_labeler: the one constructor; model_version before loading equals the loaded Labeler's."""

import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import parse_labels
from prelabel.pipeline import build_labeler, planned_model_version
from prelabel.settings import Settings

LABELS = parse_labels("cat,dog=puppy|dog")
BASE = Settings(detector="random-tiny", segmenter="random-tiny", device="cpu")


@pytest.mark.parametrize("changes", [{}, {"sam_runtime": "int8"}, {"box_threshold": 0.2}, {"segmenter": ""},
                                     {"detector_runtime": "openvino"}])
def test_planned_model_version_is_the_loaded_one(changes):
    settings = Settings(**{**BASE.__dict__, **changes})
    assert planned_model_version(settings, LABELS) == build_labeler(settings).model_version(LABELS)


def test_runtime_and_dtype_change_the_model_version_and_display_settings_do_not():
    base = planned_model_version(BASE, LABELS)
    assert planned_model_version(Settings(**{**BASE.__dict__, "sam_runtime": "onnx"}), LABELS) != base
    assert planned_model_version(Settings(**{**BASE.__dict__, "dtype": "bf16"}), LABELS) != base
    assert planned_model_version(Settings(**{**BASE.__dict__, "detector_runtime": "openvino"}), LABELS) != base
    assert planned_model_version(Settings(**{**BASE.__dict__, "review_threshold": 0.99}), LABELS) == base
    assert planned_model_version(BASE, LABELS).startswith("prelabel-random-")


def test_overrides_build_boxes_only_or_clicks_only_labelers():
    boxes = build_labeler(BASE, segmenter="")
    assert boxes.detector is not None and boxes.segmenter is None
    clicks = build_labeler(BASE, detector="")
    assert clicks.detector is None and clicks.segmenter is not None
    with pytest.raises(PrelabelError, match="needs a detector"):
        clicks.predict(__import__("numpy").zeros((32, 32, 3), "uint8"), LABELS)
    with pytest.raises(TypeError, match="unknown settings: colour"):
        build_labeler(BASE, colour="red")
