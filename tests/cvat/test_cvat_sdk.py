"""The cvat-sdk functions, checked with the sdk's own spec validation and its driver's shape mapping."""

from __future__ import annotations

import logging

import attrs
import cvat_sdk.auto_annotation as cvataa
import numpy as np
import pytest
from cvat_sdk import models
from cvat_sdk.api_client import ApiClient
from cvat_sdk.auto_annotation.driver import _AnnotationMapper, _DetectionFunctionContextImpl
from cvat_sdk.masks import decode_mask
from PIL import Image

from prelabel.core.errors import PrelabelError
from prelabel.cvat import sdk_function
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings

LABELS = "person=person|pedestrian,car,tree"
WIDTH, HEIGHT = 320, 240


pytestmark = pytest.mark.usefixtures("random_tiny_env")


@pytest.fixture(scope="module")
def image() -> Image.Image:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixels[50:200, 60:260] = (30, 160, 40)
    return Image.fromarray(pixels)


def context(conf_threshold: float | None = None, conv_mask_to_poly: bool = False) -> _DetectionFunctionContextImpl:
    """The context cvat-sdk's driver (and cvat-cli's agent) passes to detect()."""
    return _DetectionFunctionContextImpl(
        frame_name="frame_000003.jpg", conf_threshold=conf_threshold, conv_mask_to_poly=conv_mask_to_poly
    )


def task_labels(spec: cvataa.DetectionFunctionSpec, conv_mask_to_poly: bool) -> list[models.Label]:
    """Task labels named like the spec's, of the type each accepts (mask becomes polygon with conv_mask_to_poly)."""

    def task_type(kind: str) -> str:
        return "polygon" if kind == "mask" and conv_mask_to_poly else kind

    return [
        models.Label._from_openapi_data(
            name=label.name, id=100 + label.id, type=task_type(label.type), attributes=[], sublabels=[]
        )
        for label in spec.labels
    ]


def remap(function: sdk_function.DetectionFunction, shapes: list, conv_mask_to_poly: bool) -> list:
    """The sdk driver's own validation and label mapping; raises BadFunctionError on a contract breach."""
    mapper = _AnnotationMapper(
        logging.getLogger("test"),
        function.spec.labels,
        task_labels(function.spec, conv_mask_to_poly),
        allow_unmatched_labels=False,
        conv_mask_to_poly=conv_mask_to_poly,
    )
    tags, remapped = mapper.validate_and_remap(shapes, 3)
    assert tags == []
    ApiClient().sanitize_for_serialization(models.PatchedLabeledDataRequest(shapes=remapped))  # JSON-ready
    return remapped


@pytest.fixture(scope="module")
def detection() -> sdk_function.DetectionFunction:
    return sdk_function.create(labels=LABELS)


def test_spec_passes_the_sdk_checks(detection):
    spec = cvataa.DetectionFunctionSpec(labels=detection.spec.labels)  # re-runs the sdk's validators
    assert [(label.name, label.id, label.type) for label in spec.labels] == [
        ("person", 0, "mask"),
        ("car", 1, "mask"),
        ("tree", 2, "mask"),
    ]


def test_masks_are_accepted_by_the_driver_and_decode_to_the_labeler_masks(detection, image):
    shapes = detection.detect(context(), image)
    assert shapes and {shape.type.value for shape in shapes} == {"mask"}
    regions = build_labeler(Settings.load()).predict(np.asarray(image), detection._labels.prompts)
    for shape, mask, score in zip(shapes, regions.masks, regions.scores, strict=True):
        assert np.array_equal(decode_mask(shape.points, image_width=WIDTH, image_height=HEIGHT), mask)
        assert shape.score == pytest.approx(float(score))
    remapped = remap(detection, shapes, conv_mask_to_poly=False)
    assert len(remapped) == len(shapes) and {shape.frame for shape in remapped} == {3}
    assert {shape.label_id for shape in remapped} <= {100, 101, 102}


def test_conv_mask_to_poly_gives_polygons_only(detection, image):
    shapes = detection.detect(context(conv_mask_to_poly=True), image)
    assert shapes and {shape.type.value for shape in shapes} == {"polygon"}
    for shape in shapes:
        xs, ys = np.array(shape.points[0::2]), np.array(shape.points[1::2])
        assert len(xs) >= 3 and xs.min() >= 0 and xs.max() <= WIDTH and ys.min() >= 0 and ys.max() <= HEIGHT
    remap(detection, shapes, conv_mask_to_poly=True)


@pytest.mark.parametrize("label_type", ["rectangle", "polygon"])
def test_other_label_types(image, label_type):
    function = sdk_function.create(labels=LABELS, label_type=label_type)
    shapes = function.detect(context(), image)
    assert shapes and {shape.type.value for shape in shapes} == {label_type}
    remap(function, shapes, conv_mask_to_poly=False)


def test_conf_threshold_is_respected(detection, image):
    everything = detection.detect(context(conf_threshold=None), image)
    strict = detection.detect(context(conf_threshold=0.99999), image)
    assert len(strict) < len(everything) and all(shape.score >= 0.99999 for shape in strict)


def test_a_failing_frame_gets_no_shapes_and_is_logged(detection, image, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setattr(detection._labeler, "predict", broken)
    with caplog.at_level(logging.ERROR, logger="prelabel.cvat.sdk_function"):
        assert detection.detect(context(), image) == []
    assert "frame_000003.jpg" in caplog.text and "illegal memory access" in caplog.text


def test_labels_fall_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("PRELABEL_LABELS", "bolt=rusted bolt")
    assert [label.name for label in sdk_function.create().spec.labels] == ["bolt"]


def test_model_parameters_override_the_environment(monkeypatch):
    monkeypatch.setenv("PRELABEL_DETECTOR", "/nowhere/gdino")
    monkeypatch.setenv("PRELABEL_SEGMENTER", "/nowhere/sam")
    function = sdk_function.create(labels="bolt", detector="random-tiny", segmenter="random-tiny", device="cpu")
    assert function._labeler.detector.model_id == "random-tiny"
    assert function._labeler.segmenter.model_id == "random-tiny"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "no labels given"),
        ({"labels": "a,a"}, "duplicate"),
        ({"labels": "a", "kind": "reid"}, "kind must be .detector., .interactor. or .tracker."),
        ({"labels": "a", "label_type": "points"}, "type"),
    ],
)
def test_bad_parameters_fail_at_create(kwargs, message):
    with pytest.raises(PrelabelError, match=message):
        sdk_function.create(**kwargs)


@attrs.frozen(kw_only=True)
class PromptsDouble(cvataa.InteractionPrompts):
    """Test double of the prompts cvat-cli's agent passes to an interaction function."""

    pos_points: tuple = ()
    neg_points: tuple = ()
    bounding_box: tuple | None = None


def test_interaction_function_like_an_agent_runs_it(image):
    function = sdk_function.create(kind="interactor")
    assert isinstance(function.spec, cvataa.InteractionFunctionSpec)
    segmenter = build_labeler(Settings.load(), detector="").segmenter
    pp_image = function.preprocess_image(None, image.rotate(90, expand=True))  # a frame no other test used
    before = segmenter.encoder_calls
    prompts = [
        PromptsDouble(pos_points=((100.0, 120.0),)),
        PromptsDouble(pos_points=((100.0, 120.0),), neg_points=((5.0, 5.0),)),
        PromptsDouble(bounding_box=((20.0, 30.0), (200.0, 220.0))),
    ]
    for prompt in prompts:
        (shape,) = function.detect(None, pp_image, prompt)
        assert shape.type == "mask" and 0 <= float(shape.attributes[0].value) <= 1
        assert shape.attributes[0].spec_id == cvataa.InteractionResultAttributes.CONFIDENCE
        mask = decode_mask(shape.points, image_width=pp_image.shape[1], image_height=pp_image.shape[0])
        points = np.array(prompt.pos_points + prompt.neg_points, dtype=np.float32).reshape(-1, 2)
        labels = np.array([1] * len(prompt.pos_points) + [0] * len(prompt.neg_points))
        box = np.array(prompt.bounding_box, dtype=np.float32).ravel() if prompt.bounding_box else None
        assert np.array_equal(mask, segmenter.segment_points(pp_image, points, labels, box)[0])
    assert segmenter.encoder_calls == before + 1


@pytest.mark.parametrize(
    "prompt, message",
    [(PromptsDouble(pos_points=((WIDTH + 1.0, 2.0),)), "outside"), (PromptsDouble(), "at least one positive")],
)
def test_interaction_bad_prompts_raise_a_clear_error(image, prompt, message):
    function = sdk_function.create(kind="interactor")
    with pytest.raises(PrelabelError, match=message):
        function.detect(None, function.preprocess_image(None, image), prompt)
