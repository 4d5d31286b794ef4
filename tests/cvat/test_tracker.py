"""The CVAT tracker function: CVAT-shaped requests across consecutive frames, states that survive any worker."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import nuclio_sdk
import nuclio_sdk.json_encoder
import nuclio_sdk.test
import numpy as np
import pytest

from prelabel.core.errors import PrelabelError
from prelabel.cvat.tracker import TrackerFunction
from video_data import TemplateTrackerDouble, square_at, square_frames

TRACKER_DIR = Path(__file__).resolve().parents[2] / "cvat_serverless" / "sam2_tracker" / "nuclio"
SIDE = 24


def b64_png(frame: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return base64.b64encode(data.tobytes()).decode()


def as_cvat_sends(states: list) -> list:
    """CVAT signs each state (JSON) and returns it unsigned on the next call: a JSON round trip."""
    return [json.loads(json.dumps(s)) for s in states]


def is_cvat_shape(shape) -> bool:
    return (isinstance(shape, list) and len(shape) == 4 and all(type(v) in (int, float) for v in shape)
            and all(np.isfinite(shape)) and shape[0] <= shape[2] and shape[1] <= shape[3])


def test_tracker_double_keeps_a_moving_square_across_consecutive_frames():
    frames = list(square_frames(30, size=(160, 96), speed=3))
    x, y = square_at(0, 3)
    shapes, states = [[x, y, x + SIDE, y + SIDE], [130, 70, 150, 90]], []
    for index, frame in enumerate(frames):
        function = TrackerFunction(TemplateTrackerDouble())  # a new worker on every call
        body = {"image": b64_png(frame), "shapes": shapes, "states": as_cvat_sends(states)}
        reply = function(body, frame)
        assert set(reply) == {"shapes", "states"} and len(reply["shapes"]) == len(reply["states"]) == 2
        assert all(is_cvat_shape(s) for s in reply["shapes"])
        x, y = square_at(index, 3)
        assert np.abs(np.array(reply["shapes"][0]) - [x, y, x + SIDE, y + SIDE]).max() <= 1, index
        if index:
            assert reply["states"][1]["lost"] and reply["shapes"][1] == [130.0, 70.0, 150.0, 90.0]
        shapes, states = reply["shapes"], reply["states"]
    assert len(json.dumps(states[0])) < 20_000


def test_reinitialised_objects_are_appended_and_bad_input_is_a_400_error():
    frames = list(square_frames(3))
    function = TrackerFunction(TemplateTrackerDouble())
    first = function({"shapes": [[10, 30, 34, 54]], "states": []}, frames[0])
    second = function({"shapes": [[12, 30, 36, 54], [50, 50, 60, 60]], "states": [*first["states"], None]}, frames[1])
    assert second["shapes"][1] == [50.0, 50.0, 60.0, 60.0] and len(second["states"]) == 2
    for body, match in [({"shapes": [[1, 2, 3]], "states": []}, "flat list"),
                        ({"shapes": [[1, 2, 3, float("nan")]], "states": []}, "NaN"),
                        ({"shapes": [[1, 2, 3, 4]], "states": [{"v": 99}]}, "re-initialise"),
                        ({"shapes": "x", "states": []}, "must be lists")]:
        with pytest.raises(PrelabelError, match=match):
            function(body, frames[2])


def _main():
    spec = importlib.util.spec_from_file_location("cvat_sam2_tracker_main", TRACKER_DIR / "main.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def call(platform, handler, body):
    raw = json.dumps(body).encode()
    event = nuclio_sdk.EventDeserializerKinds.msgpack_raw.value.deserialize({
        b"body": raw, b"content_type": b"application/json", b"trigger": {b"kind": b"http", b"name": b"t"},
        b"fields": {}, b"headers": {}, b"id": b"1", b"method": b"POST", b"path": b"/", b"size": len(raw),
        b"timestamp": 0, b"url": b"", b"shard_id": 0, b"num_shards": 0, b"type": b"", b"type_version": b"",
        b"version": b""})
    output = platform.call_handler(handler, event)
    reply = nuclio_sdk.Response.from_entrypoint_output(nuclio_sdk.json_encoder.Encoder().encode, output)
    return reply["status_code"], json.loads(reply["body"])


def test_nuclio_handler_with_sam2_video_random_tiny(monkeypatch):
    """The deployed main.py with the real SAM 2.1 video architecture (random weights: plumbing, not quality)."""
    monkeypatch.setenv("PRELABEL_VIDEO_TRACKER", "random-tiny-sam2-video")
    monkeypatch.setenv("PRELABEL_DEVICE", "cpu")
    platform = nuclio_sdk.test.Platform()
    main = _main()
    frames = list(square_frames(5))
    shapes, states = [[10, 30, 34, 54], [60, 10, 90, 40]], []
    for frame in frames:
        status, reply = call(platform, main.handler, {"image": b64_png(frame), "shapes": shapes, "states": states})
        assert status == 200 and len(reply["shapes"]) == len(reply["states"]) == 2
        assert all(is_cvat_shape(s) and s[2] <= 160 and s[3] <= 96 for s in reply["shapes"])
        shapes, states = reply["shapes"], as_cvat_sends(reply["states"])
    status, reply = call(platform, main.handler, {"image": "not base64!", "shapes": shapes, "states": states})
    assert status == 400 and "error" in reply


def test_init_without_a_tracker_names_the_setting(monkeypatch):
    from prelabel.cvat import nuclio

    monkeypatch.delenv("PRELABEL_VIDEO_TRACKER", raising=False)
    with pytest.raises(PrelabelError, match="PRELABEL_VIDEO_TRACKER"):
        nuclio.init_tracker(object())


def test_cvat_sdk_tracking_function_follows_the_moving_square():
    """The cvat-sdk TrackingFunction (agents): init on one frame, then one predicted rectangle per next frame."""
    import cvat_sdk.auto_annotation as cvataa
    import PIL.Image

    from prelabel.cvat.sdk_function import TrackingFunction, create

    double = TemplateTrackerDouble()
    function = TrackingFunction(double)
    assert function.spec.supported_shape_types == {"rectangle"}
    frames = list(square_frames(12, side=SIDE))
    x, y = square_at(0)
    state = function.init_tracking_state(None, function.preprocess_image(None, PIL.Image.fromarray(frames[0])),
                                         cvataa.TrackableShape(type="rectangle", points=[x, y, x + SIDE, y + SIDE]))
    for index in range(1, len(frames)):
        shape = function.track(None, function.preprocess_image(None, PIL.Image.fromarray(frames[index])), state)
        x, y = square_at(index)
        assert shape is not None and shape.type == "rectangle"
        assert np.allclose(shape.points, [x, y, x + SIDE, y + SIDE], atol=2), (index, shape.points)
    assert double.calls == len(frames) - 1
    blank = np.zeros_like(frames[0])
    assert function.track(None, blank, state) is None, "a lost object is reported as lost, not guessed"
    real = create(kind="tracker", tracker="random-tiny-sam2-video", device="cpu")
    pp = real.preprocess_image(None, PIL.Image.fromarray(frames[0]))
    state = real.init_tracking_state(None, pp, cvataa.TrackableShape(type="rectangle", points=[10, 30, 34, 54]))
    moved = real.track(None, real.preprocess_image(None, PIL.Image.fromarray(frames[1])), state)
    assert moved is None or (moved.type == "rectangle" and len(moved.points) == 4)
