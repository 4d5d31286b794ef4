"""Tiled inference maps tile detections back to full-image coordinates and merges the overlaps."""

import cv2
import numpy as np
import pytest

from prelabel.core.errors import PrelabelError
from prelabel.core.geometry import box_to_mask
from prelabel.core.labels import LabelPrompt
from prelabel.core.regions import Regions
from prelabel.pipeline.labeler import Labeler, Thresholds
from prelabel.pipeline.tiling import predict_tiled, tile_windows

# Planted white squares (x1, y1, x2, y2): inside one tile, across a vertical, a horizontal and both tile seams.
PLANTED = np.array([[20, 30, 50, 60], [240, 100, 270, 125], [90, 250, 110, 278], [245, 245, 275, 270],
                    [560, 360, 590, 395]], dtype=np.float32)


class BrightBlobDetectorDouble:
    """A test double for Grounding DINO: boxes every bright blob of the tile it is given, in tile coordinates."""

    model_id = "bright-blob-double"
    random_weights = True

    def __init__(self) -> None:
        self.tile_shapes: list[tuple[int, int]] = []

    def detect(self, image, labels, floor) -> Regions:
        self.tile_shapes.append(image.shape[:2])
        count, _, stats, _ = cv2.connectedComponentsWithStats((image[:, :, 0] > 127).astype(np.uint8))
        x, y, w, h = (stats[1:, i].astype(np.float32) for i in range(4))
        boxes = np.stack([x, y, x + w, y + h], axis=1)
        return Regions((image.shape[1], image.shape[0]), tuple(label.name for label in labels), boxes,
                       np.full(count - 1, 0.9), np.zeros(count - 1, dtype=np.int64))


class BoxFillSegmenterDouble:
    """A test double for SAM: each box's mask is the box filled, in the coordinates of the tile it is given."""

    model_id = "box-fill-double"
    random_weights = True
    encoder_calls = 0

    def segment_boxes(self, image, boxes_xyxy):
        height, width = image.shape[:2]
        masks = np.stack([box_to_mask(box, width, height) for box in boxes_xyxy]) if len(boxes_xyxy) else \
            np.zeros((0, height, width), dtype=bool)
        return masks, np.full(len(boxes_xyxy), 0.8)


def test_windows_cover_the_image_with_the_requested_overlap():
    windows = tile_windows(600, 400, 256, 0.25)
    assert windows[0] == (0, 0, 256, 256) and windows[-1] == (344, 144, 600, 400)
    assert sorted({w[0] for w in windows}) == [0, 192, 344]
    assert tile_windows(100, 80, 256, 0.25) == [(0, 0, 100, 80)]
    with pytest.raises(PrelabelError, match="overlap"):
        tile_windows(600, 400, 256, 1.0)


def test_tiled_boxes_land_on_the_planted_objects():
    image = np.zeros((400, 600, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in PLANTED.astype(int):
        image[y1:y2, x1:x2] = 255
    detector = BrightBlobDetectorDouble()
    labeler = Labeler(detector, BoxFillSegmenterDouble(), Thresholds(nms_iou=0.5))
    regions = predict_tiled(labeler, image, [LabelPrompt("rivet", ())], size=256, overlap=0.25, with_masks=True)
    assert detector.tile_shapes == [(256, 256)] * 6, "every detector call saw one tile, not the whole image"
    assert regions.image_size == (600, 400) and regions.meta["tiles"] == 6
    found = regions.boxes_xyxy[np.lexsort((regions.boxes_xyxy[:, 1], regions.boxes_xyxy[:, 0]))]
    expected = PLANTED[np.lexsort((PLANTED[:, 1], PLANTED[:, 0]))]
    np.testing.assert_array_equal(found, expected)
    for box, mask in zip(regions.boxes_xyxy, regions.masks, strict=True):
        np.testing.assert_array_equal(mask, box_to_mask(box, 600, 400))
