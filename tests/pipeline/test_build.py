"""build_labeler: the one constructor; model_version before loading equals the loaded Labeler's."""

import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import parse_labels
from prelabel.models.specs import detector_family, has_text_threshold
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


@pytest.mark.parametrize("detector", ["random-tiny", "random-tiny-mm-grounding-dino", "random-tiny-owlv2",
                                      "random-tiny-omdet-turbo", "random-tiny-sam3"])
def test_the_text_threshold_belongs_to_grounding_dino_families_only(detector):
    has_text = detector in ("random-tiny", "random-tiny-mm-grounding-dino")
    settings = [Settings(**{**BASE.__dict__, "detector": detector, "segmenter": "", "text_threshold": t})
                for t in (0.1, 0.3)]
    versions = {planned_model_version(s, LABELS) for s in settings}
    assert len(versions) == (2 if has_text else 1), "part of the model_version only where it applies"
    labeler = build_labeler(settings[1])
    assert labeler.config.text_threshold == (0.3 if has_text else None)
    assert labeler.model_version(LABELS) == planned_model_version(settings[1], LABELS)


def test_a_detector_family_is_known_without_torch_from_a_folder_config(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "owlv2"}')
    assert detector_family(str(tmp_path)) == "owlv2" and not has_text_threshold(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "mm-grounding-dino"}')
    assert has_text_threshold(str(tmp_path))
    assert has_text_threshold("some-org/not-downloaded-yet"), "unknown yet: the default family, Grounding DINO"
    assert not has_text_threshold("random-tiny-sam3")
