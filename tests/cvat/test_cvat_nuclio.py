"""The Nuclio handlers, called in-process the way Nuclio's Python runtime calls them, replies read as CVAT reads them.

Events are built with nuclio-sdk's own deserializer (from the dict its wrapper unpacks from the processor),
handler output goes through nuclio-sdk's ``Response.from_entrypoint_output``, and the reply is then parsed
like CVAT's lambda manager does (``raise_for_status``, ``reply.json()``, ``parse_anno``).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import nuclio_sdk
import nuclio_sdk.json_encoder
import nuclio_sdk.test
import numpy as np
import pytest
import yaml
from cvat_sdk.masks import decode_mask, encode_mask
from PIL import Image

from prelabel.core.errors import PrelabelError
from prelabel.cvat import nuclio
from prelabel.cvat.prompts import with_threshold
from prelabel.cvat.spec import CvatLabels, labels_from_function_yaml
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DETECTOR_DIR = ROOT / "cvat_serverless" / "gdino_sam" / "nuclio"
INTERACTOR_DIR = ROOT / "cvat_serverless" / "sam_interactor" / "nuclio"
WIDTH, HEIGHT = 320, 240


pytestmark = pytest.mark.usefixtures("random_tiny_env")


@pytest.fixture(scope="module")
def platform() -> nuclio_sdk.test.Platform:
    return nuclio_sdk.test.Platform()


@pytest.fixture(scope="module")
def detector_main() -> ModuleType:
    return _load_main("cvat_gdino_sam_main", DETECTOR_DIR)


@pytest.fixture(scope="module")
def interactor_main() -> ModuleType:
    return _load_main("cvat_sam_interactor_main", INTERACTOR_DIR)


def _load_main(module_name: str, folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, folder / "main.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # nuclio_sdk.test.Platform finds init_context through sys.modules
    spec.loader.exec_module(module)
    return module


def frame(kind: str = "JPEG", mode: str = "RGB", seed: int = 0, size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    """An encoded frame as CVAT stores it."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    pixels[60:180, 80:240] = (200, 40, 40)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=kind)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    """What CVAT's LambdaFunction._get_image sends."""
    return base64.b64encode(data).decode("utf-8")


def call(platform: nuclio_sdk.test.Platform, handler: Any, body: Any) -> tuple[int, Any]:
    """One HTTP request through nuclio-sdk, read back as CVAT does: (status, reply.json())."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    event = nuclio_sdk.EventDeserializerKinds.msgpack_raw.value.deserialize(
        {
            b"body": raw,
            b"content_type": b"application/json",
            b"trigger": {b"kind": b"http", b"name": b"myHttpTrigger"},
            b"fields": {},
            b"headers": {},
            b"id": b"1",
            b"method": b"POST",
            b"path": b"/",
            b"size": len(raw),
            b"timestamp": 0,
            b"url": b"",
            b"shard_id": 0,
            b"num_shards": 0,
            b"type": b"",
            b"type_version": b"",
            b"version": b"",
        }
    )
    output = platform.call_handler(handler, event)
    reply = nuclio_sdk.Response.from_entrypoint_output(nuclio_sdk.json_encoder.Encoder().encode, output)
    assert reply["content_type"] == "application/json" and reply["body_encoding"] == "text"
    return reply["status_code"], json.loads(reply["body"])


def cvat_mask_points(item: dict[str, Any]) -> list[int]:
    """CVAT's batch conversion of a detector mask item: RLE of the raw crop values, then the inclusive box."""
    values, bbox = np.array(item["mask"][:-4]), item["mask"][-4:]
    runs = encode_mask(values.reshape(1, -1).astype(bool), bbox=[0, 0, len(values), 1])[:-4]
    return runs + bbox


def is_number(value: Any) -> bool:
    return type(value) in (int, float)  # what CVAT's shape serializer accepts


def expected_regions(body: dict[str, Any]):
    labels = labels_from_function_yaml(DETECTOR_DIR / "function.yaml")
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["image"]))).convert("RGB"))
    return build_labeler(Settings.load()).predict(image, with_threshold(labels.prompts, body.get("threshold")))


def test_detector_reply_is_what_cvat_parses(platform, detector_main):
    body = {"image": b64(frame()), "threshold": 0.5}
    status, items = call(platform, detector_main.handler, body)
    assert status == 200 and isinstance(items, list) and items
    config = yaml.safe_load((DETECTOR_DIR / "function.yaml").read_text())
    spec = {entry["name"]: entry["type"] for entry in json.loads(config["metadata"]["annotations"]["spec"])}
    regions = expected_regions(body)
    masks_by_label = {
        name: [m for m, label in zip(regions.masks, regions.labels, strict=True) if label == name] for name in spec
    }
    for item in items:
        assert spec[item["label"]] == item["type"]
        assert is_number(item["confidence"]) and item["confidence"] >= 0.5
        points = item["points"]
        assert all(is_number(v) for v in points) and len(points) % 2 == 0
        xs, ys = np.array(points[0::2]), np.array(points[1::2])
        assert xs.min() >= 0 and xs.max() <= WIDTH and ys.min() >= 0 and ys.max() <= HEIGHT
        if item["type"] == "rectangle":
            assert len(points) == 4 and points[0] <= points[2] and points[1] <= points[3]
        else:
            assert len(points) >= 6
        if item["type"] == "mask":
            xtl, ytl, xbr, ybr = item["mask"][-4:]
            assert all(type(v) is int for v in item["mask"]) and set(item["mask"][:-4]) <= {0, 1}
            assert len(item["mask"]) - 4 == (xbr - xtl + 1) * (ybr - ytl + 1)
            decoded = decode_mask(cvat_mask_points(item), image_width=WIDTH, image_height=HEIGHT)
            assert any(np.array_equal(decoded, mask) for mask in masks_by_label[item["label"]])
            assert (xtl, ytl) == (np.nonzero(decoded)[1].min(), np.nonzero(decoded)[0].min())


def test_threshold_is_applied_and_optional(platform, detector_main):
    image = b64(frame(seed=1))
    status, default = call(platform, detector_main.handler, {"image": image})  # CVAT omits a threshold of 0
    assert status == 200 and len(default) == len(expected_regions({"image": image}))
    status, strict = call(platform, detector_main.handler, {"image": image, "threshold": 0.99999})
    assert status == 200 and len(strict) < len(default)
    assert all(item["confidence"] >= 0.99999 for item in strict)
    assert {json.dumps(item, sort_keys=True) for item in strict} <= {
        json.dumps(item, sort_keys=True) for item in default
    }


@pytest.mark.parametrize("kind, mode", [("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "RGB")])
def test_detector_takes_frames_as_stored(platform, detector_main, kind, mode):
    status, items = call(platform, detector_main.handler, {"image": b64(frame(kind, mode))})
    assert status == 200 and isinstance(items, list)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"image": b64(b"this is no image")}, "base64 image"),
        ({"image": "%%%"}, "image"),
        ({"image": 42}, "base64 string"),
        ({"threshold": 0.5}, "'image' is missing"),
        ({"image": b64(frame()), "threshold": "high"}, "threshold"),
        ({"image": b64(frame()), "threshold": 1.5}, "threshold"),
        (b"{not json", "not JSON"),
        ([1, 2], "JSON object"),
    ],
)
def test_detector_bad_input_is_a_400_with_a_reason(platform, detector_main, body, message):
    status, reply = call(platform, detector_main.handler, body)
    assert status == 400 and message in reply["error"]


@pytest.mark.parametrize("kind", ["mask", "polygon", "rectangle"])
def test_labels_and_types_come_from_the_spec(tmp_path, kind):
    labels = CvatLabels.parse("widget=red box|crate", kind)
    (tmp_path / "function.yaml").write_text(
        yaml.safe_dump({"metadata": {"name": "f", "annotations": {"type": "detector", "spec": labels.spec_json()}}})
    )
    context = nuclio_sdk.Context(nuclio_sdk.test.Platform().context.logger)
    nuclio.init_detector(context, tmp_path)
    items = context.user_data.function({"image": b64(frame())})
    assert items and {(item["label"], item["type"]) for item in items} == {("widget", kind)}
    assert all(("mask" in item) == (kind == "mask") for item in items)


@pytest.mark.parametrize("spec", ["[]", "", '[{"name": "a"}, {"name": "a"}]', '[{"name": "a", "type": "points"}]'])
def test_a_bad_spec_stops_the_deploy_with_a_reason(tmp_path, spec):
    (tmp_path / "function.yaml").write_text(yaml.safe_dump({"metadata": {"annotations": {"spec": spec}}}))
    context = nuclio_sdk.Context(nuclio_sdk.test.Platform().context.logger)
    with pytest.raises(PrelabelError, match="prelabel cvat spec"):
        nuclio.init_detector(context, tmp_path)


def interactor_mask(reply: dict[str, Any]) -> np.ndarray:
    """The mask CVAT's UI builds: mask2Rle(mask.flat()) followed by bounds (or the whole image)."""
    crop = np.array(reply["mask"], dtype=bool)
    bounds = reply.get("bounds", [0, 0, crop.shape[1] - 1, crop.shape[0] - 1])
    assert crop.shape == (bounds[3] - bounds[1] + 1, bounds[2] - bounds[0] + 1)
    runs = encode_mask(crop.reshape(1, -1), bbox=[0, 0, crop.size, 1])[:-4]
    return decode_mask(runs + bounds, image_width=WIDTH, image_height=HEIGHT)


def test_interactor_clicks_reuse_the_image_embedding(platform, interactor_main):
    segmenter = build_labeler(Settings.load(), detector="").segmenter
    image_b64 = b64(frame(seed=7))
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(image_b64))).convert("RGB"))
    clicks = [
        {"pos_points": [[160.5, 120.0]], "neg_points": [], "obj_bbox": None},
        {"pos_points": [[160.5, 120.0], [100, 90]], "neg_points": [[10, 10]], "obj_bbox": None},
        {"pos_points": [], "neg_points": [], "obj_bbox": [[80, 60], [240, 180]]},
    ]
    call(platform, interactor_main.handler, {"image": b64(frame(seed=8)), "pos_points": [[1, 1]], "neg_points": []})
    before = segmenter.encoder_calls
    for index, click in enumerate(clicks):
        status, reply = call(platform, interactor_main.handler, {"image": image_b64, **click})
        assert status == 200
        assert segmenter.encoder_calls == before + 1, f"click {index} ran the image encoder again"
        assert all(is_number(v) for row in reply["mask"] for v in row) and set(np.unique(reply["mask"])) <= {0, 1}
        assert all(len(p) == 2 and 0 <= p[0] <= WIDTH and 0 <= p[1] <= HEIGHT for p in reply["points"])
        points = np.array(click["pos_points"] + click["neg_points"], dtype=np.float32).reshape(-1, 2)
        labels = np.array([1] * len(click["pos_points"]) + [0] * len(click["neg_points"]))
        box = np.array(click["obj_bbox"], dtype=np.float32).ravel() if click["obj_bbox"] else None
        expected, _ = segmenter.segment_points(image, points, labels, box)
        assert np.array_equal(interactor_mask(reply), expected)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"pos_points": [[WIDTH + 5, 10]], "neg_points": []}, "outside"),
        ({"pos_points": [[10, 10]], "neg_points": [[-1, 3]]}, "outside"),
        ({"pos_points": [], "neg_points": [[5, 5]]}, "at least one positive point"),
        ({"pos_points": [[10, "a"]], "neg_points": []}, "pair of finite numbers"),
        ({"pos_points": "10,10", "neg_points": []}, "list of [x, y] pairs"),
        ({"pos_points": [], "neg_points": [], "obj_bbox": [[WIDTH + 1, 0], [WIDTH + 9, 9]]}, "does not overlap"),
        ({"pos_points": [[10, 10]], "neg_points": [], "obj_bbox": [1, 2, 3]}, "obj_bbox"),
    ],
)
def test_interactor_bad_prompts_are_a_400_with_a_reason(platform, interactor_main, body, message):
    status, reply = call(platform, interactor_main.handler, {"image": b64(frame()), **body})
    assert status == 400 and message in reply["error"]


@pytest.mark.parametrize("body", [{"pos_points": [[1, 1]]}, {"image": b64(b"GIF89a?"), "pos_points": [[1, 1]]}])
def test_interactor_bad_image_is_a_400(platform, interactor_main, body):
    status, reply = call(platform, interactor_main.handler, body)
    assert status == 400 and "image" in reply["error"]


def test_unexpected_failure_is_a_500_with_a_reason(platform, detector_main, monkeypatch):
    def broken(image, labels, with_masks=True):
        raise RuntimeError("out of memory")

    call(platform, detector_main.handler, {"image": b64(frame())})  # make sure init_context ran
    function = platform._get_handler_context(detector_main.handler).user_data.function
    monkeypatch.setattr(function.labeler, "predict", broken)
    status, reply = call(platform, detector_main.handler, {"image": b64(frame())})
    assert status == 500 and "out of memory" in reply["error"] and reply["request_id"] == "1"  # Nuclio's event id
