"""SAM 3 as a concept segmenter (text -> masks), its tracker clicks and exemplar prompts, on random-tiny-sam3.

Real transformers ``Sam3Model`` / ``Sam3TrackerModel`` architectures with random weights; preprocessing and
post-processing are checked against hand-computed values (torchvision, which transformers' own SAM 3
processor needs, cannot be installed here).
"""

import json

import numpy as np
import pytest
import torch

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt, parse_labels
from prelabel.models.random_sam3 import (
    TRACKER_FOLDER,
    build_sam3,
    sam3_config,
    sam3_preprocessor_config,
    save_sam3_folder,
)
from prelabel.models.registry import load_detector
from prelabel.models.sam3 import (
    Sam3ConceptSegmenter,
    Sam3Preprocessor,
    boxes_to_pixels,
    pixel_boxes_to_cxcywh,
    roi_align,
    stability_score,
    upsample_mask_logits,
)
from prelabel.pipeline import Labeler, Thresholds, build_labeler
from prelabel.settings import Settings

LABELS = parse_labels("car door,car,cat=cat|kitty")


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 255, (90, 140, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_sam3_folder(tmp_path_factory.mktemp("sam3"), "random-tiny-sam3")


@pytest.fixture(scope="module")
def labeler(folder):
    return build_labeler(Settings(detector=str(folder), segmenter="", device="cpu", box_threshold=0.0, nms_iou=1.0))


# --- preprocessing and post-processing, by hand --------------------------------------------------------
def test_preprocessing_matches_hand_computed_values():
    pre = Sam3Preprocessor.from_dict(sam3_preprocessor_config(4))
    assert (pre.height, pre.width, pre.image_mean, pre.image_std) == (4, 4, (0.5,) * 3, (0.5,) * 3)
    flat = pre(np.full((7, 3, 3), 51, np.uint8))
    assert flat.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(flat.numpy(), (51 / 255 - 0.5) / 0.5, atol=1e-6)
    # a 1 x 2 ramp [0, 255] stretched to 4 x 4: half-pixel bilinear samples x = -0.25, 0.25, 0.75, 1.25
    ramp = np.zeros((1, 2, 3), np.uint8)
    ramp[0, 1] = 255
    row = pre(ramp)[0, 0, 0].numpy()
    np.testing.assert_allclose(row, (np.array([0, 64, 191, 255]) / 255 - 0.5) / 0.5, atol=1e-6)
    with pytest.raises(PrelabelError, match="bilinear"):
        Sam3Preprocessor.from_dict({**sam3_preprocessor_config(), "resample": 3})


def test_roi_align_matches_hand_computed_values():
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    features = (2 * xs + 3 * ys)[None, None]  # bilinear sampling is exact on a linear map
    pooled = roi_align(features, [torch.tensor([[1.0, 1.0, 5.0, 5.0]])], 2)
    # bins of 2 x 2 px, 2 x 2 samples each: bin (0, 0) samples x, y in {1.5, 2.5} -> mean 2 -> 2*2 + 3*2
    np.testing.assert_allclose(pooled[0, 0].numpy(), [[10, 14], [16, 20]], atol=1e-6)
    outside = roi_align(features, [torch.tensor([[-3.0, -3.0, -1.0, -1.0]])], 1)
    assert outside.item() == 0.0, "samples beyond -1 count as zero, as in torchvision"
    edge = roi_align(features, [torch.tensor([[6.0, 6.0, 10.0, 10.0]])], 1)
    # 4 x 4 samples at 6.5, 7.5, 8.5, 9.5 per axis on an 8-pixel map: 8.5 and 9.5 lie beyond it (zero),
    # 7.5 is clamped to the last pixel (7); the 4 valid samples average 2*6.75 + 3*6.75, over all 16
    np.testing.assert_allclose(edge.item(), (2 * 6.75 + 3 * 6.75) * 4 / 16, atol=1e-6)


def test_mask_and_box_post_processing_by_hand():
    logits = torch.tensor([[[2.0, 0.5], [-0.5, -2.0]]])
    assert stability_score(logits).item() == pytest.approx(1 / 3)  # 1 pixel > +1, 3 pixels > -1
    masks = upsample_mask_logits(torch.tensor([[[3.0, 3.0], [-3.0, -3.0]]]), (4, 6))
    assert masks.shape == (1, 4, 6) and masks[0][:2].all() and not masks[0][2:].any()
    np.testing.assert_allclose(boxes_to_pixels(np.array([[0.1, 0.2, 0.5, 1.2]]), 200, 100), [[20, 20, 100, 100]])
    np.testing.assert_allclose(pixel_boxes_to_cxcywh(np.array([[20, 20, 100, 100]]), 200, 100).numpy(),
                               [[0.3, 0.6, 0.4, 0.8]], atol=1e-6)


# --- loading --------------------------------------------------------------------------------------------
def test_save_pretrained_folder_loads_by_model_type(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "sam3"
    assert (folder / "preprocessor_config.json").is_file() and (folder / TRACKER_FOLDER / "config.json").is_file()
    loaded = load_detector(str(folder), device="cpu")
    assert isinstance(loaded, Sam3ConceptSegmenter) and loaded.random_weights is False
    reference, _, tokenizer, _ = build_sam3("random-tiny-sam3")
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    assert loaded.tokenizer("car door")["input_ids"] == tokenizer("car door")["input_ids"]
    assert (loaded.preprocessor.height, loaded.preprocessor.width) == (112, 112)
    assert loaded.shares_backbone, "the saved tracker has the detector's backbone weights: one ViT"


def test_random_specs_build_offline():
    tiny = load_detector("random-tiny-sam3", device="cpu")
    assert isinstance(tiny, Sam3ConceptSegmenter) and tiny.random_weights and tiny.shares_backbone
    full = sam3_config("random-full-sam3")  # facebook/sam3's shapes (built only by the bench: 0.8 B parameters)
    vit = full.vision_config.backbone_config
    assert (vit.hidden_size, vit.num_hidden_layers, vit.image_size, vit.patch_size) == (1024, 32, 1008, 14)


# --- pre-labeling ---------------------------------------------------------------------------------------
def test_labeler_predicts_masks_without_a_second_segmenter(labeler, image):
    assert labeler.segmenter is None
    before = labeler.detector.encoder_calls
    regions = labeler.predict(image, LABELS)
    n = len(regions)
    assert n > 0 and regions.masks.shape == (n, 90, 140) and regions.mask_scores.shape == (n,)
    assert set(regions.labels) <= {"car door", "car", "cat"}
    assert regions.meta["segmenter"] is None and regions.meta["detector"] == labeler.detector.model_id
    assert set(regions.meta["presence"]) == {"car door", "car", "cat"}
    assert regions.features.shape == (n, 6) and ((regions.uncertainty >= 0) & (regions.uncertainty <= 1)).all()
    assert labeler.detector.encoder_calls == before + 1, "one ViT pass for four phrases of three labels"
    labeler.predict(image, LABELS)
    assert labeler.detector.encoder_calls == before + 1, "the vision features are cached by image content"
    assert labeler.predict(image, LABELS, with_masks=False).masks is None


def test_each_label_gets_its_own_prompt_even_as_a_substring(labeler, image):
    detector = labeler.detector
    labels = [LabelPrompt("car", ("car",)), LabelPrompt("car door", ("car door",))]
    regions = detector.detect(image, labels, 0.0)
    for label_id, phrase in enumerate(["car", "car door"]):
        own = detector.run_prompt(image, phrase)
        mine = regions.boxes_xyxy[regions.label_ids == label_id]
        np.testing.assert_allclose(mine, own["boxes"], atol=1e-5)
        np.testing.assert_allclose(regions.scores[regions.label_ids == label_id], own["scores"], atol=1e-6)
    car, door = detector.run_prompt(image, "car"), detector.run_prompt(image, "car door")
    assert not np.allclose(car["query_scores"], door["query_scores"]), "the two texts are different prompts"


def test_scores_are_query_times_presence_and_thresholds_are_per_label(labeler, image):
    out = labeler.detector.run_prompt(image, "car")
    np.testing.assert_allclose(out["scores"], out["query_scores"] * out["presence"], rtol=1e-6)
    cut = float(np.median(out["scores"]))
    labels = [LabelPrompt("car", ("car",), box_threshold=cut), LabelPrompt("cat", ("cat",), box_threshold=1.0)]
    assert set(labeler.detector.detect(image, labels, 0.0).labels) == {"car", "cat"}, "the detector cuts at its floor"
    every = Labeler(labeler.detector, None, Thresholds(box_threshold=0.0, nms_iou=1.0, max_detections=1000))
    regions = every.predict(image, labels, with_masks=False)
    assert set(regions.labels) == {"car"} and (regions.scores >= cut).all(), "the Labeler cuts per label"
    assert len(regions) == int((out["scores"] >= cut).sum())


# --- clicks ---------------------------------------------------------------------------------------------
def test_click_after_prelabel_reuses_the_vision_features(labeler):
    image = np.full((64, 80, 3), 9, np.uint8)
    detector = labeler.detector
    before = detector.encoder_calls
    labeler.predict(image, LABELS)
    assert detector.encoder_calls == before + 1
    mask, score = labeler.click(image, np.array([[10, 10], [40, 40]]), np.array([1, 0]))
    assert mask.shape == (64, 80) and mask.dtype == bool and 0 <= score <= 1
    labeler.click(image, np.zeros((0, 2)), np.zeros(0), box_xyxy=np.array([5, 5, 30, 30]))
    assert detector.encoder_calls == before + 1, "clicks run the tracker's neck and decoder, not the ViT"
    # the shared features are exactly what the tracker computes from the pixels itself
    tracker = detector.tracker
    shared = tracker.embed(image).embeddings
    own = tracker.model.get_image_embeddings(detector.preprocessor(image))
    for a, b in zip(shared, own):
        torch.testing.assert_close(a, b)
    masks, scores = detector.segment_boxes(image, np.array([[5, 5, 30, 30], [20, 10, 70, 60]], np.float32))
    assert masks.shape == (2, 64, 80) and scores.shape == (2,)


def test_a_folder_without_tracker_says_how_to_get_clicks(tmp_path, image):
    path = save_sam3_folder(tmp_path, with_tracker=False)
    labeler = build_labeler(Settings(detector=str(path), segmenter="", device="cpu"))
    with pytest.raises(PrelabelError, match="tracker"):
        labeler.click(image, np.array([[10, 10]]), np.array([1]))


def test_a_tracker_with_another_backbone_keeps_its_own_embedding(image):
    model, tracker, tokenizer, preprocessor = build_sam3("random-tiny-sam3")
    torch.manual_seed(5)
    own = type(tracker)(tracker.config).eval()  # a different (random) backbone
    detector = Sam3ConceptSegmenter(model, tokenizer, Sam3Preprocessor.from_dict(preprocessor), "t", True,
                                    tracker=own)
    assert not detector.shares_backbone
    detector.detect(image, LABELS[:1], 0.0)
    detector.segment_points(image, np.array([[10, 10]]), np.array([1]))
    detector.segment_points(image, np.array([[20, 10]]), np.array([1]))
    assert detector.encoder_calls == 2, "its own ViT runs once, then its embedding is cached"


# --- exemplars ------------------------------------------------------------------------------------------
def test_exemplar_boxes_find_instances_of_that_label(labeler, image):
    detector = labeler.detector
    before = detector.encoder_calls
    positive = np.array([[10, 10, 50, 40]], np.float32)
    negative = np.array([[80, 50, 130, 85]], np.float32)
    regions = labeler.find_similar(image, LABELS, "car", positive, negative)
    assert len(regions) > 0 and set(regions.labels) == {"car"}
    assert regions.masks.shape == (len(regions), 90, 140)
    assert regions.meta["exemplars"] == {"positive": 1, "negative": 1}
    text_only = detector.run_prompt(image, "car")
    with_boxes = detector.run_prompt(image, "car", positive)
    with_negative = detector.run_prompt(image, "car", np.concatenate([positive, negative]), np.array([1, 0]))
    assert not np.allclose(text_only["query_scores"], with_boxes["query_scores"]), "the boxes reach the model"
    assert not np.allclose(with_boxes["query_scores"], with_negative["query_scores"]), "so does the negative"
    assert detector.encoder_calls == before, "exemplar prompts reuse the cached vision features"
    with pytest.raises(PrelabelError, match="positive"):
        detector.find_similar(image, LABELS, "car", np.zeros((0, 4)), floor=0.35)


def test_sam3_tracker_alone_is_a_segmenter_behind_another_detector(folder, image):
    from prelabel.models.registry import load_segmenter
    from prelabel.models.sam3 import Sam3TrackerSegmenter

    seg = load_segmenter("random-tiny-sam3", "cpu", "fp32", 64)
    assert isinstance(seg, Sam3TrackerSegmenter) and seg.random_weights
    masks, scores = seg.segment_boxes(image, np.array([[5, 5, 60, 50], [40, 20, 135, 85]], np.float32))
    assert masks.shape == (2, 90, 140) and ((scores >= 0) & (scores <= 1)).all()
    seg.segment_points(image, np.array([[10.0, 80.0]]), np.array([1]))
    assert seg.encoder_calls == seg.own_encoder_calls == 1
    labeler = build_labeler(Settings(detector="random-tiny", segmenter=str(folder), device="cpu", box_threshold=0.0))
    regions = labeler.predict(image, LABELS)
    assert len(regions) > 0 and regions.masks.shape == (len(regions), 90, 140)
    assert regions.meta["segmenter"] == f"{folder}#tracker"


def test_cached_features_share_the_position_encodings(labeler):
    detector = labeler.detector
    a = detector.vision_features(np.full((30, 40, 3), 1, np.uint8))
    b = detector.vision_features(np.full((30, 40, 3), 2, np.uint8))
    assert all(x is y for x, y in zip(a.vision.fpn_position_encoding, b.vision.fpn_position_encoding))
    assert a.nbytes == sum(t.numel() * 4 for t in [a.vision.last_hidden_state, *a.vision.fpn_hidden_states])
