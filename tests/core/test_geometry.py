import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from prelabel.core.geometry import (
    box_iou,
    box_to_mask,
    clip_boxes,
    mask_to_box,
    mask_to_polygons,
    mask_to_rle,
    nms_per_label,
    polygon_area,
    polygon_to_mask,
    rle_to_mask,
)


@st.composite
def blob_masks(draw):
    """Random filled ellipses and rectangles, possibly touching the image border."""
    h, w = draw(st.integers(20, 120)), draw(st.integers(20, 120))
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(draw(st.integers(1, 3))):
        cx, cy = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        ax, ay = draw(st.integers(6, max(6, w // 2))), draw(st.integers(6, max(6, h // 2)))
        if draw(st.booleans()):
            cv2.ellipse(mask, (cx, cy), (ax, ay), draw(st.integers(0, 180)), 0, 360, 1, -1)
        else:
            cv2.rectangle(mask, (cx - ax, cy - ay), (cx + ax, cy + ay), 1, -1)
    return mask.astype(bool)


@settings(max_examples=60, deadline=None)
@given(blob_masks(), st.sampled_from([0.002, 0.01, 0.03]), st.integers(4, 60))
def test_polygons_cover_the_mask(mask, tolerance, max_vertices):
    h, w = mask.shape
    polygons = mask_to_polygons(mask, tolerance=tolerance, max_vertices=max_vertices, parts="all", min_part_area=0)
    assert polygons, "a non-empty mask must give a polygon"
    refill = np.zeros_like(mask)
    for polygon in polygons:
        assert 3 <= len(polygon) <= max_vertices
        assert (polygon[:, 0] >= 0).all() and (polygon[:, 0] <= w).all()
        assert (polygon[:, 1] >= 0).all() and (polygon[:, 1] <= h).all()
        refill |= polygon_to_mask(polygon, w, h)
    iou = (refill & mask).sum() / (refill | mask).sum()
    # coarse vertex budgets on unions of shapes cost accuracy (4 vertices for an L: IoU 0.34 seen); fine ones must be close
    assert iou > (0.85 if max_vertices >= 20 and tolerance <= 0.01 else 0.4 if max_vertices >= 8 else 0.25)


@settings(max_examples=40, deadline=None)
@given(st.integers(10, 60), st.integers(10, 60), st.integers(0, 30), st.integers(0, 30))
def test_rectangle_polygon_area_matches_mask(w, h, x, y):
    mask = np.zeros((100, 100), dtype=bool)
    mask[y : y + h, x : x + w] = True
    (polygon,) = mask_to_polygons(mask)
    assert len(polygon) == 4
    # the outline runs through boundary pixel centres: area (w-1)(h-1) of the w*h pixels
    assert abs(polygon_area(polygon) - (w - 1) * (h - 1)) < 1e-3
    assert np.array_equal(polygon_to_mask(polygon, 100, 100), mask)


def test_empty_mask_gives_no_polygon():
    assert mask_to_polygons(np.zeros((30, 30), dtype=bool)) == []


def test_largest_part_policy_and_tiny_parts_dropped():
    mask = np.zeros((100, 100), dtype=bool)
    mask[10:60, 10:60] = True
    mask[80:83, 80:83] = True  # a speck
    mask[70:95, 5:30] = True
    assert len(mask_to_polygons(mask, parts="largest")) == 1
    assert len(mask_to_polygons(mask, parts="all", min_part_area=0.05)) == 2
    assert len(mask_to_polygons(mask, parts="all", min_part_area=0)) == 3


def test_holes_are_filled():
    mask = np.zeros((60, 60), dtype=bool)
    mask[10:50, 10:50] = True
    mask[25:35, 25:35] = False
    (polygon,) = mask_to_polygons(mask)
    assert polygon_to_mask(polygon, 60, 60)[30, 30]


@settings(max_examples=30, deadline=None)
@given(blob_masks())
def test_rle_round_trip(mask):
    assert np.array_equal(rle_to_mask(mask_to_rle(mask)), mask)
    uncompressed = {"size": list(mask.shape), "counts": [int(mask.size)]}
    assert not rle_to_mask(uncompressed).any()


def test_box_mask_conversions_and_clipping():
    boxes = clip_boxes([[-5, 3, 120, 40], [50, 60, 10, 5]], 100, 50)
    assert boxes.tolist() == [[0, 3, 100, 40], [50, 50, 50, 50]]
    mask = box_to_mask(np.array([10, 5, 30, 25]), 40, 40)
    assert mask.sum() == 400
    assert mask_to_box(mask).tolist() == [10, 5, 30, 25]
    assert mask_to_box(np.zeros((5, 5), bool)).tolist() == [0, 0, 0, 0]
    stack = np.stack([mask, np.zeros_like(mask), mask.T])
    assert mask_to_box(stack).tolist() == [[10, 5, 30, 25], [0, 0, 0, 0], [5, 10, 25, 30]]


def test_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([0, 0, 1, 0])
    keep = nms_per_label(boxes, scores, labels, iou_threshold=0.5)
    assert keep.tolist() == [0, 2, 3]
    assert box_iou(boxes[:1], boxes[1:2])[0, 0] == np.float64(81 / 100)
