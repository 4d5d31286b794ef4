import numpy as np
import pytest

from prelabel.core.regions import Regions


def make(n=2, **kw):
    args = dict(
        image_size=(100, 50),
        label_names=("a", "b"),
        boxes_xyxy=np.tile([10.0, 5.0, 40.0, 30.0], (n, 1)),
        scores=np.linspace(0.5, 0.9, n),
        label_ids=np.arange(n) % 2,
    )
    args.update(kw)
    return Regions(**args)


def test_valid_regions_expose_labels_and_select():
    regions = make(3)
    assert len(regions) == 3
    assert regions.labels == ["a", "b", "a"]
    sub = regions.select(np.array([False, True, True]))
    assert sub.labels == ["b", "a"]
    assert sub.scores.tolist() == pytest.approx([0.7, 0.9])


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(label_ids=[0, 2]), "label_ids"),
        (dict(scores=[0.5, 1.5]), "scores"),
        (dict(scores=[0.5]), "scores must have 2"),
        (dict(boxes_xyxy=[[10, 5, 5, 30], [0, 0, 1, 1]]), "x1 <= x2"),
        (dict(boxes_xyxy=[[10, 5, 120, 30], [0, 0, 1, 1]]), "inside the image"),
        (dict(masks=np.zeros((2, 10, 10))), "masks must have shape"),
        (dict(image_size=(0, 50)), "positive"),
    ],
)
def test_invariants_are_enforced(override, message):
    with pytest.raises(ValueError, match=message):
        make(2, **override)


def test_to_dict_round_trips_masks_as_rle():
    from prelabel.core.geometry import rle_to_mask

    masks = np.zeros((2, 50, 100), dtype=bool)
    masks[0, 5:30, 10:40] = True
    regions = make(2).with_masks(masks, [0.9, 0.8])
    doc = regions.to_dict(include_masks=True)
    assert [r["label"] for r in doc["regions"]] == ["a", "b"]
    assert np.array_equal(rle_to_mask(doc["regions"][0]["mask_rle"]), masks[0])
    assert doc["regions"][0]["mask_score"] == pytest.approx(0.9)


def test_empty_regions():
    regions = Regions.empty((10, 10), ["x"], note="none")
    assert len(regions) == 0 and regions.to_dict()["regions"] == []
