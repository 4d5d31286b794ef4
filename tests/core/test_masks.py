"""Compact masks give exactly what the full-frame stack gives: RLE, polygons, boxes, areas."""

import cv2
import numpy as np
import pytest

from prelabel.core.geometry import mask_to_box, mask_to_polygons, mask_to_rle
from prelabel.core.masks import Masks


def blobs(seed: int, n: int = 12, height: int = 37, width: int = 53) -> np.ndarray:
    """Random ellipses and lines, some cut by the image edges, one empty, one full, one spanning all rows."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, height, width), dtype=np.uint8)
    for mask in masks[:-3]:
        for _ in range(rng.integers(1, 4)):
            center = (int(rng.integers(-5, width + 5)), int(rng.integers(-5, height + 5)))
            axes = (int(rng.integers(1, 20)), int(rng.integers(1, 20)))
            cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        if rng.random() < 0.5:
            cv2.line(mask, (int(rng.integers(0, width)), 0), (int(rng.integers(0, width)), height - 1), 1, 1)
    masks[-2] = 1
    masks[-1, :, 10:14] = 1  # full height: its runs join across columns in column-major order
    return masks.astype(bool)


@pytest.mark.parametrize("seed", range(4))
def test_crops_give_what_full_frames_give(seed):
    dense = blobs(seed)
    masks = Masks.from_dense(dense)
    assert masks.shape == dense.shape and np.array_equal(masks.dense(), dense)
    assert np.array_equal(masks.boxes(), mask_to_box(dense))
    assert masks.areas().tolist() == dense.sum(axis=(1, 2)).tolist()
    assert sum(crop.size for crop in masks.crops) < dense[0].size * len(dense)
    for i, frame in enumerate(dense):
        assert masks.rle(i) == mask_to_rle(frame)
        for parts in ("largest", "all"):
            expected = mask_to_polygons(frame, parts=parts, tolerance=0.005, max_vertices=20)
            got = masks.polygons(i, parts=parts, tolerance=0.005, max_vertices=20)
            assert len(got) == len(expected)
            assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_placed_pieces_are_cut_to_the_image_and_to_their_tight_box():
    piece = np.zeros((10, 10), bool)
    piece[2:8, 3:9] = True
    masks = Masks.from_placed((20, 12), [(-4, 5, piece), (15, -1, piece), (0, 0, np.zeros((4, 4), bool))])
    assert masks.boxes().tolist() == [[0, 7, 5, 12], [18, 1, 20, 7], [0, 0, 0, 0]]
    assert masks[0][7:12, 0:5].all() and masks[0].sum() == 25 and masks[2].sum() == 0
    assert masks.select([2, 0]).boxes().tolist() == [[0, 0, 0, 0], [0, 7, 5, 12]]


def test_crops_outside_the_image_or_not_bool_are_refused():
    with pytest.raises(ValueError, match="inside"):
        Masks((10, 10), (np.ones((3, 3), bool),), np.array([[8, 0]]))
    with pytest.raises(ValueError, match="bool"):
        Masks((10, 10), (np.ones((3, 3), np.uint8),), np.array([[0, 0]]))


@pytest.mark.parametrize("seed", range(3))
def test_rles_decode_straight_into_crops(seed):
    dense = blobs(seed)
    rles = [mask_to_rle(frame) for frame in dense]
    listed = [{"size": r["size"], "counts": mask_utils_counts(frame)} for r, frame in zip(rles, dense, strict=True)]
    for source in (rles, listed):
        masks = Masks.from_rles((53, 37), source)
        assert np.array_equal(masks.dense(), dense)
        assert np.array_equal(masks.boxes(), Masks.from_dense(dense).boxes())


def test_compressed_rles_of_noisy_and_large_masks_decode_as_pycocotools_does():
    """Long strings: counts of several 5-bit groups, negative deltas, runs of one pixel, a huge run at the end."""
    rng = np.random.default_rng(0)
    frames = [rng.random((300, 400)) < 0.5, rng.random((300, 400)) < 0.02, np.zeros((300, 400), bool)]
    frames[2][299, 0] = frames[2][0, 399] = True
    masks = Masks.from_rles((400, 300), [mask_to_rle(frame) for frame in frames])
    for i, frame in enumerate(frames):
        assert np.array_equal(masks[i], frame) and masks.rle(i) == mask_to_rle(frame)


def mask_utils_counts(frame: np.ndarray) -> list[int]:
    """Uncompressed COCO counts of a mask (column-major runs, zeros first)."""
    flat = np.concatenate([[0], frame.T.ravel().astype(np.int8), [0]])
    changes = np.flatnonzero(np.diff(flat)) + 0
    bounds = np.concatenate([[0], changes, [frame.size]])
    counts = np.diff(bounds).tolist()
    return counts[:-1] if len(counts) > 1 and counts[-1] == 0 else counts


def test_an_rle_of_another_size_is_refused():
    with pytest.raises(ValueError, match="size"):
        Masks.from_rles((10, 10), [mask_to_rle(np.zeros((5, 10), bool))])
