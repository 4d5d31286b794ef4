"""Nuclio handler core of the CVAT functions; the ``main.py`` files in ``cvat_serverless/`` only delegate here.

Models come from the ``PRELABEL_*`` environment variables, the detector's labels and prompts from
``metadata.annotations.spec`` of its own function.yaml (CVAT knows no other labels). Every request
gets a JSON reply: the result, or ``{"error": message}`` with 400 for bad input and 500 otherwise.
"""

from __future__ import annotations

import json
import os
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prelabel.core.errors import BadRequest, PrelabelError
from prelabel.core.images import decode_base64_image
from prelabel.cvat.prompts import click_prompt, parse_threshold, with_threshold
from prelabel.cvat.shapes import detector_items, interactor_reply
from prelabel.cvat.spec import CvatLabels, labels_from_function_yaml
from prelabel.cvat.tracker import TrackerFunction
from prelabel.pipeline import Labeler, build_labeler
from prelabel.settings import Settings, SettingsError

FUNCTION_FILE_ENV = "PRELABEL_CVAT_FUNCTION_FILE"
"""Name of the deployed function.yaml inside the function folder (``function-gpu.yaml`` on GPU)."""


@dataclass(frozen=True)
class DetectorFunction:
    """CVAT detector: ``{image, threshold?}`` to a list of shapes of the spec's labels."""

    labeler: Labeler
    labels: CvatLabels

    def __call__(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        image = _image(body)
        prompts = with_threshold(self.labels.prompts, parse_threshold(body.get("threshold")))
        with_masks = any(kind != "rectangle" for kind in self.labels.types.values())
        regions = self.labeler.predict(image, prompts, with_masks=with_masks)
        return detector_items(regions, self.labels.types)


@dataclass(frozen=True)
class InteractorFunction:
    """CVAT interactor: ``{image, pos_points, neg_points, obj_bbox?}`` to ``{mask, bounds, points}``."""

    labeler: Labeler

    def __call__(self, body: Mapping[str, Any]) -> dict[str, Any]:
        image = _image(body)
        height, width = image.shape[:2]
        points, point_labels, box = click_prompt(
            width, height, body.get("pos_points"), body.get("neg_points"), body.get("obj_bbox")
        )
        mask, _ = self.labeler.click(image, points, point_labels, box)
        return interactor_reply(np.asarray(mask, dtype=bool))


def init_detector(context: Any, function_dir: str | Path) -> None:
    """Load the models and the spec's labels into ``context.user_data`` (once per worker)."""
    settings = Settings.load()
    spec_file = Path(function_dir) / os.environ.get(FUNCTION_FILE_ENV, "function.yaml")
    try:
        labels = labels_from_function_yaml(spec_file)
    except PrelabelError as exc:
        raise PrelabelError(
            f"{spec_file}: bad metadata.annotations.spec: {exc}. Generate it with "
            f"`prelabel cvat spec --labels ... --out {spec_file.name}`"
        ) from exc
    labeler = build_labeler(settings)
    labeler.expect_images(None)  # a function serves open-ended: runtimes convert in the background
    context.user_data.function = DetectorFunction(labeler, labels)
    context.logger.info_with(
        "prelabel detector ready",
        detector=settings.detector,
        segmenter=settings.segmenter,
        labels=[label.name for label in labels.prompts],
    )


def init_interactor(context: Any) -> None:
    """Load SAM into ``context.user_data`` (once per worker)."""
    settings = Settings.load()
    labeler = build_labeler(settings, detector="")
    labeler.expect_images(None)
    context.user_data.function = InteractorFunction(labeler)
    context.logger.info_with("prelabel interactor ready", segmenter=settings.segmenter)


@dataclass(frozen=True)
class NuclioTracker:
    """CVAT tracker: ``{image, shapes, states}`` to ``{shapes, states}`` (see :mod:`prelabel.cvat.tracker`)."""

    function: TrackerFunction

    def __call__(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.function(body, _image(body))


def init_tracker(context: Any) -> None:
    """Load the video tracker (PRELABEL_VIDEO_TRACKER) into ``context.user_data`` (once per worker)."""
    settings = Settings.load()
    if not settings.video_tracker:
        raise SettingsError("the tracker function needs PRELABEL_VIDEO_TRACKER (e.g. facebook/sam2.1-hiera-tiny, or "
                         "random-tiny-sam2-video offline) in its function.yaml env")
    labeler = build_labeler(settings, detector="", segmenter="")
    context.user_data.function = NuclioTracker(TrackerFunction(labeler.tracker))
    context.logger.info_with("prelabel tracker ready", tracker=settings.video_tracker)


def handle(context: Any, event: Any) -> Any:
    """Serve one request with the function ``init_*`` loaded; never raises."""
    try:
        result = context.user_data.function(_body(event.body))
    except PrelabelError as exc:
        context.logger.warn_with("prelabel: bad request", error=str(exc))
        return _reply(context, 400, {"error": str(exc)})
    except Exception as exc:  # a bug: a reply with the reason and the id of its logged traceback, not a bare 500
        event_id = getattr(event, "id", None)  # bytes from nuclio-sdk's raw msgpack deserializer
        request_id = (event_id.decode(errors="replace") if isinstance(event_id, bytes) else str(event_id or "")) \
            or uuid.uuid4().hex
        context.logger.error_with("prelabel: request failed (a bug, please report it)", request_id=request_id,
                                  error=repr(exc), traceback=traceback.format_exc())
        return _reply(context, 500, {"error": f"prelabel failed: {exc.__class__.__name__}: {exc}",
                                     "request_id": request_id})
    return _reply(context, 200, result)


def _body(body: Any) -> Mapping[str, Any]:
    """The request as a dict: Nuclio parses JSON only when the content type says so."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("the request body is not JSON; send a JSON object like CVAT does") from None
    if not isinstance(body, Mapping):
        raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _image(body: Mapping[str, Any]) -> np.ndarray:
    if "image" not in body:
        raise BadRequest("'image' is missing: send the frame as base64")
    return decode_base64_image(body["image"])


def _reply(context: Any, status: int, payload: Any) -> Any:
    return context.Response(body=json.dumps(payload), headers={}, content_type="application/json", status_code=status)
