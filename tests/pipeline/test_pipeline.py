"""The DINO -> SAM pipeline on real transformers architectures with random weights (random-tiny)."""

import numpy as np
import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt, parse_labels
from prelabel.pipeline.labeler import Labeler, Thresholds


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (90, 140, 3), dtype=np.uint8)


LABELS = parse_labels("cat=cat|kitty,dog,car door,car")


def test_predict_shapes_labels_and_meta(labeler, image):
    regions = labeler.predict(image, LABELS)
    n = len(regions)
    assert n > 0
    assert regions.image_size == (140, 90)
    assert regions.label_names == ("cat", "dog", "car door", "car")
    assert set(regions.labels) <= set(regions.label_names)
    assert regions.masks.shape == (n, 90, 140) and regions.mask_scores.shape == (n,)
    assert ((regions.mask_scores >= 0) & (regions.mask_scores <= 1)).all()
    assert regions.meta["random_weights"] is True
    assert regions.meta["model_version"].startswith("prelabel-random-")
    assert (np.diff(regions.scores) <= 0).all(), "regions come best first"


def test_thresholds_are_respected(labeler, image):
    everything = Labeler(labeler.detector, None, Thresholds(box_threshold=0.0, text_threshold=0.0, nms_iou=1.0))
    all_regions = everything.predict(image, LABELS, with_masks=False)
    cut = float(np.median(all_regions.scores))
    strict = Labeler(labeler.detector, None, Thresholds(box_threshold=cut, text_threshold=0.0, nms_iou=1.0))
    kept = strict.predict(image, LABELS, with_masks=False)
    assert (kept.scores >= cut).all()
    assert len(kept) == int((all_regions.scores >= cut).sum())


def test_per_label_threshold_override(labeler, image):
    loose = Labeler(labeler.detector, None, Thresholds(box_threshold=0.0, text_threshold=0.0, nms_iou=1.0))
    labels = [LabelPrompt("cat", ("cat",)), LabelPrompt("dog", ("dog",), box_threshold=1.0)]
    regions = loose.predict(image, labels, with_masks=False)
    assert "dog" not in regions.labels and "cat" in regions.labels


def test_max_detections(labeler, image):
    capped = Labeler(labeler.detector, None, Thresholds(box_threshold=0.0, max_detections=3))
    assert len(capped.predict(image, LABELS, with_masks=False)) <= 3


def test_label_spans_map_tokens_to_labels(labeler):
    chunks = labeler.detector.chunk_prompts(LABELS)
    assert len(chunks) == 1
    text, spans = chunks[0].text, chunks[0].label_spans
    assert [text[s:e] for s, e in spans[0]] == ["cat", "kitty"]
    assert [text[s:e] for s, e in spans[2]] == ["car door"]
    assert [text[s:e] for s, e in spans[3]] == ["car"]
    assert spans[3][0][0] > spans[2][0][1], "'car' is matched as its own phrase, not inside 'car door'"


def test_long_label_lists_are_split_into_prompts_and_keep_label_ids(labeler, image):
    many = [LabelPrompt(f"part{i}", (f"machine part number {i}",)) for i in range(6)]
    chunks = labeler.detector.chunk_prompts(many)
    assert len(chunks) > 1
    assert sorted(k for c in chunks for k in c.label_spans) == list(range(6))
    tokenizer = labeler.detector.processor.tokenizer
    for chunk in chunks:
        assert len(tokenizer(chunk.text)["input_ids"]) <= labeler.detector.model.config.max_text_len
    everything = Labeler(labeler.detector, None, Thresholds(box_threshold=0.0, nms_iou=1.0, max_detections=1000))
    regions = everything.predict(image, many, with_masks=False)
    assert len(set(regions.labels)) > 1


def test_a_label_longer_than_the_token_limit_is_a_clear_error(labeler, image):
    with pytest.raises(PrelabelError, match="shorten"):
        labeler.predict(image, [LabelPrompt("long", ("a very long description " * 5,))])


def test_batched_decoding_equals_one_box_at_a_time(labeler, image):
    boxes = np.array([[5, 5, 60, 50], [30, 20, 130, 85], [0, 0, 140, 90]], dtype=np.float32)
    masks, scores = labeler.segmenter.segment_boxes(image, boxes)
    for i, box in enumerate(boxes):
        one_mask, one_score = labeler.segmenter.segment_boxes(image, box[None])
        assert (one_mask[0] != masks[i]).mean() < 1e-3
        assert one_score[0] == pytest.approx(scores[i], abs=1e-4)


def test_second_call_on_same_image_skips_the_encoder(labeler):
    image = np.full((64, 64, 3), 7, dtype=np.uint8)
    before = labeler.segmenter.encoder_calls
    first = labeler.predict(image, LABELS)
    assert labeler.segmenter.encoder_calls == before + 1
    second = labeler.predict(image, LABELS)
    assert labeler.segmenter.encoder_calls == before + 1
    assert np.array_equal(first.masks, second.masks)
    mask, score = labeler.click(image, np.array([[10, 10], [40, 40]]), np.array([1, 0]))
    assert mask.shape == (64, 64) and 0 <= score <= 1
    labeler.click(image, np.zeros((0, 2)), np.zeros(0), box_xyxy=np.array([5, 5, 30, 30]))
    assert labeler.segmenter.encoder_calls == before + 1
    other = image.copy()
    other[0, 0] = 8
    labeler.click(other, np.array([[10, 10]]), np.array([1]))
    assert labeler.segmenter.encoder_calls == before + 2, "a different image is encoded"


def test_cache_respects_its_memory_budget(labeler):
    from prelabel.models.cache import LRUBytesCache

    cache: LRUBytesCache[str] = LRUBytesCache(budget_bytes=100)
    for i in range(5):
        cache.put(str(i), "x", 40)
    assert len(cache) == 2 and cache.used_bytes == 80
    assert cache.get("0") is None and cache.get("4") == "x"
    cache.put("huge", "x", 1000)
    assert cache.get("huge") is None
    counts = (cache.hits, cache.misses)
    assert "4" in cache and "0" not in cache and "huge" not in cache
    assert (cache.hits, cache.misses) == counts, "a membership test is neither a hit nor a miss"


def test_model_version_changes_with_prompts_and_thresholds(labeler):
    base = labeler.model_version(LABELS)
    assert base == labeler.model_version(parse_labels("cat=cat|kitty,dog,car door,car"))
    assert base != labeler.model_version(parse_labels("cat,dog,car door,car"))
    other = Labeler(labeler.detector, labeler.segmenter, Thresholds(box_threshold=0.31))
    assert base != other.model_version(LABELS)


def test_exemplars_and_clicks_without_a_segmenter_need_a_concept_segmenter(labeler, image):
    boxes_only = Labeler(labeler.detector, None, labeler.config)
    with pytest.raises(PrelabelError, match="exemplar prompts need a SAM 3 detector"):
        boxes_only.find_similar(image, LABELS, "cat", np.array([[5, 5, 30, 30]], np.float32))
    with pytest.raises(PrelabelError, match="interactive segmentation needs a segmenter"):
        boxes_only.click(image, np.array([[10, 10]]), np.array([1]))
