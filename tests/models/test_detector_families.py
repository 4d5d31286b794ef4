"""OWLv2 and MM Grounding DINO / LLMDet behind the Detector protocol (random-tiny, real architectures)."""

import json

import numpy as np
import pytest
import torch
from transformers import MMGroundingDinoForObjectDetection

from prelabel.core.labels import LabelPrompt, parse_labels
from prelabel.models.grounding_dino import GroundingDinoDetector
from prelabel.models.open_vocab import Owlv2Detector, build_mm_grounding_dino, build_owlv2, owlv2_config
from prelabel.models.registry import ModelLoadError, load_detector
from prelabel.pipeline.labeler import Labeler, Thresholds

CAR, DOOR = LabelPrompt("car", ("car",)), LabelPrompt("car door", ("car door",))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(2).integers(0, 255, (90, 140, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def owl():
    return load_detector("random-tiny-owlv2", device="cpu")


def test_owlv2_folder_loads_by_model_type(tmp_path, owl, image):
    model, image_processor, tokenizer = build_owlv2("random-tiny-owlv2")
    model.save_pretrained(tmp_path)
    image_processor.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "owlv2"
    loaded = load_detector(str(tmp_path), device="cpu")
    assert isinstance(loaded, Owlv2Detector) and not loaded.random_weights
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    a = loaded.detect(image, [CAR, DOOR], 0.0)
    b = owl.detect(image, [CAR, DOOR], 0.0)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_owlv2_substring_labels_are_separate_queries(owl, image):
    boxes, both = owl.label_scores(image, [CAR, DOOR])
    assert owl.queries([CAR, DOOR])[0] == ["car", "car door"]
    assert both.shape == (16, 2) and boxes.shape == (16, 4)  # 4 x 4 patches of the 64-pixel toy
    np.testing.assert_allclose(both[:, 0], owl.label_scores(image, [CAR])[1][:, 0], atol=1e-6)
    np.testing.assert_allclose(both[:, 1], owl.label_scores(image, [DOOR])[1][:, 0], atol=1e-6)
    assert not np.allclose(both[:, 0], both[:, 1])
    regions = owl.detect(image, [CAR, DOOR], 0.0)
    expected = np.where(both[:, 0] >= both[:, 1], "car", "car door")
    assert regions.labels == list(expected), "each patch goes to the label of its best query"


def test_owlv2_label_with_two_phrases_takes_the_best(owl, image):
    _, scores = owl.label_scores(image, [LabelPrompt("car", ("car", "auto"))])
    _, car = owl.label_scores(image, [CAR])
    _, auto = owl.label_scores(image, [LabelPrompt("auto", ("auto",))])
    np.testing.assert_allclose(scores[:, 0], np.maximum(car[:, 0], auto[:, 0]), atol=1e-6)


def test_owlv2_boxes_scale_by_the_padded_square(owl):
    wide = np.random.default_rng(3).integers(0, 255, (40, 160, 3), dtype=np.uint8)  # padded to 160 x 160
    boxes, _ = owl.label_scores(wide, [CAR])
    tokens = owl.tokenizer(["car"], padding="max_length", max_length=16, return_tensors="pt")
    with torch.inference_mode():
        out = owl.model(**tokens, pixel_values=owl.image_processor(images=wide, return_tensors="pt")["pixel_values"])
    cx, cy, w, h = out.pred_boxes[0].numpy().T * 160  # both axes by the longer side
    expected = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clip(0, [160, 40, 160, 40])
    np.testing.assert_allclose(boxes, expected, atol=1e-4)
    assert owlv2_config("random-full-owlv2").vision_config.image_size == 960


def test_owlv2_in_the_labeler(owl, image):
    labeler = Labeler(owl, None, Thresholds(box_threshold=0.0))
    regions = labeler.predict(image, parse_labels("car,car door"))
    assert len(regions) > 0 and regions.masks is None and regions.meta["detector"] == "random-tiny-owlv2"


def test_mm_grounding_dino_folder_and_token_spans(tmp_path, image):
    model, processor = build_mm_grounding_dino("random-tiny-mm-grounding-dino")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "mm-grounding-dino"
    loaded = load_detector(str(tmp_path), device="cpu")
    assert isinstance(loaded, GroundingDinoDetector) and isinstance(loaded.model, MMGroundingDinoForObjectDetection)
    random = load_detector("random-tiny-mm-grounding-dino", device="cpu")
    assert isinstance(random.model, MMGroundingDinoForObjectDetection) and random.random_weights
    chunk = loaded.chunk_prompts([DOOR, CAR])[0]
    assert [chunk.text[s:e] for s, e in chunk.label_spans[0]] == ["car door"]
    assert [chunk.text[s:e] for s, e in chunk.label_spans[1]] == ["car"]
    assert chunk.label_spans[1][0][0] > chunk.label_spans[0][0][1], "'car' is its own phrase, not inside 'car door'"
    regions = Labeler(loaded, None, Thresholds(box_threshold=0.0, text_threshold=0.0)).predict(image, [DOOR, CAR])
    assert len(regions) > 0 and set(regions.labels) <= {"car door", "car"}
    a = loaded.detect(image, [DOOR, CAR], 0.0)
    b = random.detect(image, [DOOR, CAR], 0.0)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_unknown_model_type_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="supported model types"):
        load_detector(str(tmp_path), device="cpu")
