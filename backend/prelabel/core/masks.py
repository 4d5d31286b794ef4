"""Per-region masks kept compact: each region's mask is the crop of its tight bounding box.

A 64 MP aerial photo with 100 regions would need 6.4 GB as an ``(N, H, W)`` bool stack; as crops it needs the
regions' own areas. Full-frame masks are made one region at a time, only where a format demands one; COCO RLE,
polygons, boxes and areas are computed from the crops.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from prelabel.core.geometry import PartPolicy, mask_to_box, mask_to_polygons


@dataclass(frozen=True, eq=False)
class Masks:
    """The bool masks of ``N`` regions of one ``size = (width, height)`` image.

    ``crops[i]`` is region ``i``'s mask inside its tight box, whose top-left pixel is ``origins[i] = (x, y)``;
    an empty mask is a ``(0, 0)`` crop. ``masks[i]`` gives one full-frame ``(H, W)`` mask.
    """

    size: tuple[int, int]
    crops: tuple[np.ndarray, ...]
    origins: np.ndarray

    def __post_init__(self) -> None:
        width, height = self.size
        origins = np.asarray(self.origins, dtype=np.int64).reshape(-1, 2)
        object.__setattr__(self, "origins", origins)
        object.__setattr__(self, "crops", tuple(self.crops))
        if len(self.crops) != len(origins):
            raise ValueError(f"{len(self.crops)} crops but {len(origins)} origins")
        for crop, (x, y) in zip(self.crops, origins, strict=True):
            if crop.dtype != bool or crop.ndim != 2 or x < 0 or y < 0 or x + crop.shape[1] > width \
                    or y + crop.shape[0] > height:
                raise ValueError(f"a mask crop {crop.dtype}{crop.shape} at ({x}, {y}) must be bool and lie inside "
                                 f"the {width}x{height} image")

    @classmethod
    def from_dense(cls, masks: np.ndarray) -> Masks:
        """Crops of an ``(N, H, W)`` stack (tight boxes found in one vectorised pass)."""
        masks = np.asarray(masks, dtype=bool)
        n, height, width = masks.shape
        boxes = mask_to_box(masks).astype(np.int64) if n else np.zeros((0, 4), np.int64)
        crops = [masks[i, y1:y2, x1:x2].copy() for i, (x1, y1, x2, y2) in enumerate(boxes)]
        return cls((width, height), tuple(crops), boxes[:, :2])

    @classmethod
    def from_placed(cls, size: tuple[int, int], placed: Iterable[tuple[int, int, np.ndarray]]) -> Masks:
        """Masks from ``(x, y, mask)`` pieces placed at ``(x, y)`` (a tile's masks in image coordinates): each
        cut to the image and to its tight box."""
        width, height = size
        crops, origins = [], []
        for x, y, mask in placed:
            mask = np.asarray(mask, dtype=bool)[max(0, -y):max(0, height - y), max(0, -x):max(0, width - x)]
            x, y = max(x, 0), max(y, 0)
            x1, y1, x2, y2 = (int(v) for v in mask_to_box(mask)) if mask.size else (0, 0, 0, 0)
            crops.append(mask[y1:y2, x1:x2].copy())
            origins.append((x + x1, y + y1) if x2 > x1 else (0, 0))
        return cls(size, tuple(crops), np.array(origins, dtype=np.int64).reshape(-1, 2))

    @classmethod
    def from_rles(cls, size: tuple[int, int], rles: Iterable[dict[str, Any]]) -> Masks:
        """Masks from full-frame COCO RLEs (compressed or list counts), each decoded straight into its crop: the
        memory is the columns its box spans, never the full frame."""
        width, height = size
        crops, origins = [], []
        for rle in rles:
            if list(rle["size"]) != [height, width]:
                raise ValueError(f"an RLE of size {rle['size']} on a {width}x{height} image")
            counts = np.asarray(rle["counts"] if isinstance(rle["counts"], list) else _counts(rle["counts"]), np.int64)
            if counts.sum() != width * height:
                raise ValueError(f"RLE counts add up to {counts.sum()}, not {width}x{height}")
            edges = np.cumsum(counts)  # runs alternate: zeros [0, e0), ones [e0, e1), zeros [e1, e2), ...
            starts, ends = edges[0::2][: len(edges) // 2], edges[1::2]
            starts, ends = starts[ends > starts], ends[ends > starts]
            if not len(starts):
                crops.append(np.zeros((0, 0), dtype=bool))
                origins.append((0, 0))
                continue
            x1, x2 = int(starts[0]) // height, (int(ends[-1]) - 1) // height + 1
            delta = np.zeros((x2 - x1) * height + 1, dtype=np.int8)  # runs never overlap: the sums stay 0 or 1
            delta[starts - x1 * height] = 1  # distinct: a run ends strictly before the next one starts
            delta[ends - x1 * height] = -1
            strip = np.cumsum(delta[:-1], dtype=np.int8).view(bool).reshape(x2 - x1, height).T  # (H, x1..x2)
            rows = np.flatnonzero(strip.any(axis=1))
            crops.append(np.ascontiguousarray(strip[rows[0]:rows[-1] + 1]))
            origins.append((x1, int(rows[0])))
        return cls(size, tuple(crops), np.array(origins, dtype=np.int64).reshape(-1, 2))

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, H, W)``, the shape of the full-frame stack these masks stand for."""
        return len(self), self.size[1], self.size[0]

    def __getitem__(self, index: int) -> np.ndarray:
        """Region ``index``'s full-frame ``(H, W)`` bool mask (one frame of memory)."""
        width, height = self.size
        frame = np.zeros((height, width), dtype=bool)
        x, y = self.origins[index]
        crop = self.crops[index]
        frame[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        """Full-frame masks, one at a time."""
        return (self[i] for i in range(len(self)))

    def dense(self) -> np.ndarray:
        """The ``(N, H, W)`` stack: for small images only (tests, overlays of one frame)."""
        return np.stack(list(self)) if len(self) else np.zeros(self.shape, dtype=bool)

    def select(self, keep: Sequence[int] | np.ndarray) -> Masks:
        """The masks at indices ``keep``, in that order."""
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        return Masks(self.size, tuple(self.crops[i] for i in keep), self.origins[keep])

    def boxes(self) -> np.ndarray:
        """Tight ``(N, 4)`` float32 boxes ``[x1, y1, x2, y2]`` (x2, y2 exclusive); zeros for an empty mask."""
        sizes = np.array([crop.shape[::-1] for crop in self.crops], dtype=np.int64).reshape(-1, 2)
        boxes = np.concatenate([self.origins, self.origins + sizes], axis=1).astype(np.float32)
        boxes[(sizes == 0).any(axis=1)] = 0
        return boxes

    def areas(self) -> np.ndarray:
        """``(N,)`` pixel counts."""
        return np.array([int(crop.sum()) for crop in self.crops], dtype=np.int64)

    def rle(self, index: int) -> dict[str, Any]:
        """Region ``index``'s COCO RLE ``{"size": [H, W], "counts": str}``, as ``mask_to_rle(masks[index])`` gives,
        computed from the crop: runs are found per crop column, then placed in the full frame's column-major order."""
        width, height = self.size
        x, y = (int(v) for v in self.origins[index])
        crop = self.crops[index]
        padded = np.zeros((crop.shape[1], crop.shape[0] + 2), dtype=np.int8)  # one crop column per row
        padded[:, 1:-1] = crop.T
        column, row = np.nonzero(np.diff(padded, axis=1))  # C order: columns left to right, rows top down
        edges = (x + column) * height + y + row  # full-frame column-major index of each 0->1 / 1->0 change
        starts, ends = edges[0::2], edges[1::2]
        joined = np.flatnonzero(ends[:-1] == starts[1:])  # a run leaving the bottom and going on at the next top
        starts, ends = np.delete(starts, joined + 1), np.delete(ends, joined)
        bounds = np.empty(2 * len(starts) + 2, dtype=np.int64)
        bounds[0], bounds[1:-1:2], bounds[2:-1:2], bounds[-1] = 0, starts, ends, width * height
        counts = np.diff(bounds)
        counts = counts[:-1] if len(counts) > 1 and counts[-1] == 0 else counts  # ends on the last pixel
        encoded = mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
        return {"size": [height, width], "counts": encoded["counts"].decode("ascii")}

    def polygons(self, index: int, tolerance: float = 0.01, max_vertices: int = 100, parts: PartPolicy = "largest",
                 min_part_area: float = 0.01) -> list[np.ndarray]:
        """:func:`~prelabel.core.geometry.mask_to_polygons` of region ``index``, traced in its crop (with a
        one-pixel empty margin, so that contours are those of the full frame) and placed in the image."""
        crop = np.pad(self.crops[index], 1)
        polygons = mask_to_polygons(crop, tolerance, max_vertices, parts, min_part_area)
        width, height = self.size
        offset = self.origins[index] - 1
        return [np.clip(polygon + offset, 0, [width, height]).astype(np.float32) for polygon in polygons]


def _counts(text: str) -> np.ndarray:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``, which it does not export),
    decoded in numpy: each count in 5-bit groups offset by 48, bit 6 = more groups, sign-extended; from the fourth
    on, a delta to the count two before."""
    codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    ends = np.flatnonzero((codes & 0x20) == 0)  # each count's last character
    if not len(ends):
        return np.zeros(0, np.int64)
    codes = codes[:ends[-1] + 1]  # a dangling group (corrupt input) is dropped, as pycocotools does
    starts = np.concatenate(([0], ends[:-1] + 1))
    position = np.arange(len(codes)) - np.repeat(starts, ends - starts + 1)  # of each character in its count
    values = np.add.reduceat((codes & 0x1F) << (5 * position), starts)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (ends - starts + 1))[negative]
    values[3::2] = np.cumsum(values[1::2])[1:]
    values[4::2] = np.cumsum(values[2::2])[1:]
    return values
