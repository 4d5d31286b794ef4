"""The embedding store: round trip, identity, budget, concurrent writers, and every broken store a miss."""

import copy
import logging
import os
import threading

import numpy as np
import pytest
import torch

from batch_data import write_shape_images
from prelabel.cli import main
from prelabel.core.geometry import mask_iou
from prelabel.core.images import load_image_file
from prelabel.core.labels import LabelPrompt
from prelabel.models.cache import LRUBytesCache
from prelabel.models.embedding_store import EmbeddingStore, StoredEmbedding
from prelabel.models.registry import load_detector, load_segmenter
from prelabel.models.sam3 import Sam3ConceptSegmenter
from prelabel.settings import Settings

SHAPES = ((1, 8, 4, 4), (1, 2, 8, 8))


def entry(seed: int = 0) -> StoredEmbedding:
    generator = torch.Generator().manual_seed(seed)
    return StoredEmbedding(tuple(torch.randn(shape, generator=generator) for shape in SHAPES), (90, 140), (64, 100))


def store(tmp_path, identity: str = "sam-a", budget: int = 10**6, shapes=SHAPES) -> EmbeddingStore:
    return EmbeddingStore(str(tmp_path / "store"), identity, budget, shapes)


def test_an_entry_comes_back_as_fp16_of_what_was_stored(tmp_path):
    first, second = store(tmp_path), store(tmp_path)  # two processes on one folder
    assert first.get("k1") is None and first.misses == 1
    first.put("k1", entry())
    got = second.get("k1")
    assert got is not None and second.hits == 1
    assert got.original_size == (90, 140) and got.reshaped_size == (64, 100)
    for stored, original in zip(got.tensors, entry().tensors, strict=True):
        assert stored.dtype == torch.float16 and torch.allclose(stored.float(), original, atol=2e-3, rtol=1e-3)


def test_another_models_entry_is_never_read(tmp_path, caplog):
    store(tmp_path, "sam-a").put("k1", entry())
    other = store(tmp_path, "sam-b")
    assert other.get("k1") is None  # another folder
    os.makedirs(os.path.dirname(other.path("k1")))
    os.replace(store(tmp_path, "sam-a").path("k1"), other.path("k1"))  # a colliding name: the identity inside
    with caplog.at_level(logging.WARNING):
        assert other.get("k1") is None and other.errors == 1
    assert "not of this segmenter" in caplog.text


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "shape", "nan"])
def test_broken_entries_are_a_miss_with_one_log_line(tmp_path, caplog, damage):
    writer = store(tmp_path, shapes=None)
    if damage == "shape":
        writer.put("k1", StoredEmbedding((torch.zeros(1, 8, 2, 2), torch.zeros(1, 2, 8, 8)), (1, 1), (1, 1)))
    elif damage == "nan":
        writer.put("k1", StoredEmbedding((torch.full(SHAPES[0], float("nan")), torch.zeros(SHAPES[1])), (1, 1), (1, 1)))
    else:
        writer.put("k1", entry())
    path = writer.path("k1")
    data = open(path, "rb").read()
    if damage != "shape" and damage != "nan":
        open(path, "wb").write({"truncate": data[: len(data) // 2], "garbage": os.urandom(200), "empty": b""}[damage])
    reader = store(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert reader.get("k1") is None
    assert reader.errors == 1 and len([r for r in caplog.records if "embedding store" in r.message]) == 1


def test_an_unwritable_or_unreadable_store_is_skipped(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    broken = EmbeddingStore(str(blocked), "sam-a", 10**6, SHAPES)
    with caplog.at_level(logging.WARNING):
        broken.put("k1", entry())
        assert broken.get("k1") is None
    assert broken.errors >= 1 and "cannot write" in caplog.text


def test_the_budget_evicts_the_least_recently_used(tmp_path):
    size = len(open(_written(tmp_path), "rb").read())
    small = EmbeddingStore(str(tmp_path / "small"), "sam-a", 3 * size + 10, SHAPES)
    for i in range(3):
        small.put(f"k{i}", entry(i))
        os.utime(small.path(f"k{i}"), (1000 + i, 1000 + i))
    assert small.get("k0") is not None  # read: now the most recently used
    small.put("k3", entry(3))
    assert [small.get(f"k{i}") is not None for i in range(4)] == [True, False, True, True]


def test_a_store_within_its_budget_is_listed_once_per_64_writes(tmp_path, monkeypatch):
    roomy = store(tmp_path, budget=10**9)
    listings = []
    real_find = roomy.fs.find
    monkeypatch.setattr(roomy.fs, "find", lambda *a, **k: listings.append(a) or real_find(*a, **k))
    for i in range(70):
        roomy.put(f"k{i}", entry())
    assert len(listings) == 2, "the first write, then the 64th after it (an object store pays per listing)"


def _written(tmp_path) -> str:
    probe = EmbeddingStore(str(tmp_path / "probe"), "sam-a", 10**6, SHAPES)
    probe.put("k", entry())
    return probe.path("k")


def test_concurrent_writers_and_readers_never_see_half_an_entry(tmp_path):
    stores = [store(tmp_path) for _ in range(4)]
    failures = []

    def work(index: int) -> None:
        for round_ in range(15):
            stores[index].put("shared", entry(round_))
            got = stores[(index + 1) % 4].get("shared")
            if got is None and stores[(index + 1) % 4].errors:
                failures.append(round_)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures and sum(s.errors for s in stores) == 0
    assert not [name for name in os.listdir(os.path.dirname(stores[0].path("shared"))) if name.endswith(".tmp")]


# --- segmenters through the store -------------------------------------------------------------------------------
IMAGE = np.random.default_rng(3).integers(0, 255, (90, 140, 3), dtype=np.uint8)
BOXES = np.array([[5, 5, 60, 50], [30, 20, 130, 85]], dtype=np.float32)
POINTS, POINT_LABELS = np.array([[40, 30], [100, 60]], np.float32), np.array([1, 0])


def process(spec: str, store_url: str | None) -> object:
    """The loaded segmenter as a new process sees it: same weights, empty cache, its own store handle."""
    segmenter = copy.copy(load_segmenter(spec, device="cpu"))
    segmenter.cache, segmenter.encoder_calls, segmenter.store = LRUBytesCache(10**9), 0, None
    if store_url:
        segmenter.use_store(store_url, 10**9, "torch")
    return segmenter


@pytest.mark.parametrize("spec", ["random-tiny", "random-tiny-sam2", "random-tiny-sam-hq"])
def test_a_click_in_another_process_reads_the_store_instead_of_encoding(tmp_path, spec):
    first = process(spec, str(tmp_path))
    masks, _ = first.segment_boxes(IMAGE, BOXES)  # the pre-label request
    fresh_mask, _ = first.segment_points(IMAGE, POINTS, POINT_LABELS)
    assert first.encoder_calls == 1 and first.store.writes == 1
    second = process(spec, str(tmp_path))
    stored_mask, _ = second.segment_points(IMAGE, POINTS, POINT_LABELS)
    stored_masks, _ = second.segment_boxes(IMAGE, BOXES)
    assert second.encoder_calls == 0 and second.store.hits == 1, "no encoder run: the embedding came from the store"
    assert mask_iou(fresh_mask[None], stored_mask[None])[0, 0] >= 0.99, "fp16 entry vs fp32 embedding"
    assert min(mask_iou(a[None], b[None])[0, 0] for a, b in zip(masks, stored_masks, strict=True)) >= 0.99


def sam3_process(store_url: str) -> Sam3ConceptSegmenter:
    """SAM 3 as a new process sees it: the same weights, empty caches, its own store handle."""
    loaded = load_detector("random-tiny-sam3", device="cpu")
    fresh = Sam3ConceptSegmenter(loaded.model, loaded.tokenizer, loaded.preprocessor, loaded.model_id, True,
                                 tracker=loaded.tracker.model)
    fresh.use_store(store_url, 10**9, "torch")
    return fresh


def test_sam3_pre_labels_store_the_trackers_click_features(tmp_path):
    first = sam3_process(str(tmp_path))
    first.detect(IMAGE, [LabelPrompt("cat", ("cat",))], 0.0)  # the pre-label request
    assert first.encoder_calls == 1 and first.store.writes == 1, "the click features are stored with the pre-label"
    fresh_mask, _ = first.segment_points(IMAGE, POINTS, POINT_LABELS)
    second = sam3_process(str(tmp_path))
    stored_mask, _ = second.segment_points(IMAGE, POINTS, POINT_LABELS)
    assert second.encoder_calls == 0 and second.store.hits == 1, "no ViT run: the click features came from the store"
    assert mask_iou(fresh_mask[None], stored_mask[None])[0, 0] >= 0.99, "fp16 entry vs fp32 features"
    assert not second.cache.misses, "the concept model's ViT was never asked for"


def test_predictions_with_a_broken_store_equal_predictions_without_one(tmp_path):
    (tmp_path / "blocked").write_text("a file where the store folder should be")
    without = process("random-tiny", None).segment_boxes(IMAGE, BOXES)
    broken = process("random-tiny", str(tmp_path / "blocked"))
    masks, scores = broken.segment_boxes(IMAGE, BOXES)
    assert np.array_equal(masks.dense(), without[0].dense()) and np.array_equal(scores, without[1])
    assert broken.store.errors == 2 and broken.encoder_calls == 1  # a read and a write, each logged, skipped


def test_another_segmenter_never_reads_these_entries(tmp_path):
    process("random-tiny", str(tmp_path)).segment_boxes(IMAGE, BOXES)
    other = process("random-tiny-sam2", str(tmp_path))
    other.segment_boxes(IMAGE, BOXES)
    assert other.encoder_calls == 1 and other.store.hits == 0


def test_batch_store_embeddings_gives_first_clicks_without_the_encoder(tmp_path, monkeypatch):
    images = tmp_path / "images"
    write_shape_images(images, 2, size=(160, 120))
    monkeypatch.setenv("PRELABEL_RUNTIME_CACHE", str(tmp_path / "cache"))
    argv = ["batch", str(images), "--labels", "box,disc", "--detector", "random-tiny", "--segmenter", "random-tiny",
            "--device", "cpu", "--out", str(tmp_path / "out")]
    try:
        assert main([*argv, "--tile", "64", "--store-embeddings"]) == 2  # tiles are encoded, not the image
        assert main([*argv, "--store-embeddings"]) == 0
    finally:
        load_segmenter("random-tiny", device="cpu").use_store(None, 0, "torch")  # shared by later tests
    server = process("random-tiny", str(tmp_path / "cache" / "embeddings"))  # the next morning's prelabel serve
    for path in sorted(p for p in images.rglob("*") if p.is_file()):
        server.segment_points(load_image_file(str(path)), POINTS, POINT_LABELS)
    assert server.encoder_calls == 0 and server.store.hits == 2


def test_the_store_is_on_by_default_for_serve_and_batch_only(tmp_path, monkeypatch):
    settings = Settings(runtime_cache="/var/cache/prelabel/")
    assert settings.embedding_store == "auto"
    assert settings.embedding_store_url(default_on=True) == "/var/cache/prelabel/embeddings"  # prelabel serve
    assert settings.embedding_store_url(default_on=False) is None  # predict, CVAT functions, plain batch
    named = Settings(embedding_store="s3://bucket/embeddings")
    assert named.embedding_store_url(default_on=False) == named.embedding_store_url(default_on=True) == named.embedding_store
    assert Settings(embedding_store="off").embedding_store_url(default_on=True) is None
    monkeypatch.setenv("PRELABEL_EMBEDDING_STORE", "off")
    write_shape_images(tmp_path / "images", 1, size=(64, 48))
    assert main(["batch", str(tmp_path / "images"), "--labels", "box", "--detector", "random-tiny", "--segmenter",
                 "random-tiny", "--device", "cpu", "--out", str(tmp_path / "out"), "--store-embeddings"]) == 2
