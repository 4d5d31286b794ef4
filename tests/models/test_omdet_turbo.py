"""OmDet-Turbo behind the Detector protocol (random-tiny-omdet-turbo: the real classes, random weights)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from prelabel.core.labels import LabelError, LabelPrompt
from prelabel.models.omdet_turbo import (
    OmDetPreprocessor,
    OmDetTurboDetector,
    build_omdet_turbo,
    omdet_turbo_config,
    preprocessor_config,
)
from prelabel.models.registry import load_detector
from prelabel.pipeline.labeler import Labeler, Thresholds

CAR, DOOR = LabelPrompt("car", ("car",)), LabelPrompt("car door", ("car door",))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(4).integers(0, 255, (90, 140, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def omdet():
    return load_detector("random-tiny-omdet-turbo", device="cpu")


def test_random_spec_loads(omdet):
    assert isinstance(omdet, OmDetTurboDetector) and omdet.random_weights
    assert omdet.model.config.model_type == "omdet-turbo"


def test_substring_labels_are_separate_queries(omdet, image):
    texts, owners, task = omdet.queries([CAR, DOOR])
    assert texts == ["car", "car door"] and owners == [0, 1] and task == "Detect car, car door."
    boxes, both = omdet.label_scores(image, [CAR, DOOR])
    assert both.shape == (20, 2) and boxes.shape == (20, 4)  # 20 queries in the toy
    assert not np.allclose(both[:, 0], both[:, 1]), "'car' and 'car door' are different class queries"
    regions = omdet.detect(image, [CAR, DOOR], 0.0)
    assert set(regions.labels) <= {"car", "car door"} and len(regions.labels) > 0
    for box, score, label_id in zip(regions.boxes_xyxy, regions.scores, regions.label_ids):
        query = np.flatnonzero(np.all(np.isclose(boxes, box), axis=1))[0]
        assert np.isclose(both[query, label_id], score, atol=1e-6), "a kept box carries its own label's score"
    _, same = omdet.label_scores(image, [CAR, LabelPrompt("auto", ("car",))])
    np.testing.assert_allclose(same[:, 0], same[:, 1], atol=1e-6)  # a column is its phrase's query, nothing else
    assert omdet.detect(image, [DOOR, CAR], 1.1).labels == [], "nothing scores above a floor of 1.1"


def test_label_with_two_phrases_takes_the_best(omdet, image):
    _, scores = omdet.label_scores(image, [LabelPrompt("car", ("car", "auto")), DOOR])
    texts = ["car", "auto", "car door"]
    assert omdet.queries([LabelPrompt("car", ("car", "auto")), DOOR])[0] == texts
    assert scores.shape == (20, 2)


def test_boxes_are_clipped_and_per_label_thresholds_are_the_labelers(omdet, image):
    regions = omdet.detect(image, [CAR, DOOR], 0.0)
    assert np.all(regions.boxes_xyxy[:, [0, 2]] >= 0) and np.all(regions.boxes_xyxy[:, [0, 2]] <= 140)
    assert np.all(regions.boxes_xyxy[:, [1, 3]] >= 0) and np.all(regions.boxes_xyxy[:, [1, 3]] <= 90)
    labels = [LabelPrompt("car", ("car",), box_threshold=1.0), DOOR]
    assert "car" in omdet.detect(image, labels, 0.0).labels, "the detector cuts at its floor only"
    strict = Labeler(omdet, None, Thresholds(box_threshold=0.0)).predict(image, labels, with_masks=False)
    assert "car" not in strict.labels and len(strict.labels) > 0


def test_too_long_prompt_is_a_label_error(omdet, image):
    with pytest.raises(LabelError, match="tokens"):
        omdet.detect(image, [LabelPrompt("long", ("x" * 200,))], 0.3)


def test_preprocessing_matches_hand_computed_values():
    image = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    pre = OmDetPreprocessor(preprocessor_config(64))
    pixels = pre(image)
    assert pixels.shape == (1, 3, 64, 64)
    resized = np.asarray(Image.fromarray(image).resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    expected = (resized - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(pixels[0].numpy().transpose(1, 2, 0), expected, atol=1e-5)
    edge = OmDetPreprocessor({**preprocessor_config(64), "size": {"shortest_edge": 40, "longest_edge": 60}})
    assert edge.output_size(30, 50) == (36, 60)


def test_save_pretrained_folder_loads_by_model_type(tmp_path, omdet, image):
    model, preprocessor, tokenizer = build_omdet_turbo("random-tiny-omdet-turbo")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    preprocessor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "omdet-turbo"
    keys = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert {"size", "image_mean", "image_std", "rescale_factor", "resample"} <= keys.keys()
    loaded = load_detector(str(tmp_path), device="cpu")
    assert isinstance(loaded, OmDetTurboDetector) and not loaded.random_weights
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    a = loaded.detect(image, [CAR, DOOR], 0.0)
    b = omdet.detect(image, [CAR, DOOR], 0.0)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    assert a.labels == b.labels


def test_full_config_has_the_released_shapes():
    config = omdet_turbo_config("random-full-omdet-turbo")
    assert config.backbone_config.model_type == "swin" and config.backbone_config.embed_dim == 96
    assert config.backbone_config.image_size == 640 and config.num_queries == 900


def test_preprocessing_matches_transformers_detr_pil_processor():
    from transformers import DetrImageProcessorPil  # the checkpoint's DetrImageProcessor, PIL backend (no torchvision)

    config = preprocessor_config(96)
    reference = DetrImageProcessorPil(**{k: v for k, v in config.items()
                                         if k not in ("image_processor_type", "processor_class")})
    image = np.random.default_rng(5).integers(0, 255, (45, 70, 3), dtype=np.uint8)
    expected = reference(images=image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(OmDetPreprocessor(config)(image), expected, atol=1e-5, rtol=0)
