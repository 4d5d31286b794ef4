"""The one way to build a Labeler from settings, and its ``model_version`` before any model is loaded."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from prelabel.core.labels import LabelPrompt
from prelabel.core.model_version import model_version
from prelabel.core.scoring import Scoring
from prelabel.models.auto import AUTO, AutoChoice, choose
from prelabel.models.protocols import StoresEmbeddings
from prelabel.models.specs import has_text_threshold, is_random, runtime_model_id, segments_itself
from prelabel.pipeline.exploration import Exploration
from prelabel.pipeline.labeler import Labeler, Thresholds, config_dict
from prelabel.settings import Settings

log = logging.getLogger(__name__)
_SETTING_NAMES = frozenset(f.name for f in fields(Settings))


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with the given fields replaced (``None`` keeps a field as it is)."""
    unknown = sorted(set(overrides) - _SETTING_NAMES)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(unknown)}")
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def labeler_thresholds(settings: Settings) -> Thresholds:
    """The thresholds part of the settings (the text threshold only for a detector family that has one)."""
    text = settings.text_threshold if settings.detector and has_text_threshold(settings.detector) else None
    return Thresholds(settings.box_threshold, text, settings.nms_iou, settings.max_detections)


def exploration(settings: Settings) -> Exploration | None:
    """The exploration the settings ask for (PRELABEL_EXPLORE_SHARE > 0), or None."""
    explore = Exploration(settings.explore_share, settings.explore_max, settings.explore_floor)
    return explore if explore.active else None


def build_labeler(settings: Settings | None = None, **overrides: Any) -> Labeler:
    """Load the models the settings name (once per process and spec) into a Labeler.

    ``overrides`` replace settings fields (``detector=""`` builds no detector, for clicks only;
    ``segmenter=""`` builds no segmenter, for boxes only). A detector that segments itself (SAM 3) gets no
    segmenter: its masks and clicks are its own. This is the only caller of the model registry.
    """
    # torch and transformers: planned_model_version (Label Studio's /setup answer) runs without them
    from prelabel.models.registry import load_detector, load_segmenter, load_tracker

    s = resolved(with_overrides(settings or Settings.load(), **overrides))
    detector = (load_detector(s.detector, s.device, s.dtype, s.detector_runtime, s.runtime_cache,
                              s.detector_convert_after, s.detector_convert_memory_gb) if s.detector else None)
    segmenter = (load_segmenter(s.segmenter, s.device, s.dtype, s.cache_mb, s.sam_runtime, s.runtime_cache,
                                s.sam_convert_memory_gb, s.sam_precision) if s.segmenter else None)
    for model in (segmenter, detector):  # models are shared per process: the store follows the settings built last
        if isinstance(model, StoresEmbeddings):
            model.use_store(s.embedding_store_url(default_on=False), s.embedding_store_bytes, s.sam_runtime)
    tracker = load_tracker(s.video_tracker, s.device, s.dtype) if s.video_tracker else None
    return Labeler(detector, segmenter, labeler_thresholds(s), s.dtype, tracker)


def resolved(settings: Settings) -> Settings:
    """The settings as the labeler will use them: no segmenter behind a detector that segments itself, and
    ``auto`` dtype / SAM runtime resolved for the device found (:mod:`prelabel.models.auto`), so that
    ``model_version`` names what actually runs."""
    if settings.segmenter and segments_itself(settings.detector):
        log.info("%s segments itself: the segmenter %s is not loaded", settings.detector, settings.segmenter)
        settings = replace(settings, segmenter="")
    if AUTO in (settings.dtype, settings.sam_runtime, settings.detector_runtime, settings.sam_precision):
        from prelabel.models.devices import native_bf16_cpu, pick_device  # torch, only with an ``auto`` to resolve

        device = pick_device(settings.device)
        choice = choose(device, settings.segmenter, settings.dtype, settings.sam_runtime,
                        detector=settings.detector, detector_runtime=settings.detector_runtime,
                        sam_precision=settings.sam_precision, native_bf16=device == "cpu" and native_bf16_cpu())
        _log_choice(choice)
        settings = replace(settings, dtype=choice.dtype, sam_runtime=choice.sam_runtime,
                           detector_runtime=choice.detector_runtime, sam_precision=choice.sam_precision)
    return settings


_logged: set[AutoChoice] = set()


def _log_choice(choice: AutoChoice) -> None:
    """Log each distinct ``auto`` resolution once per process (setup requests resolve it again)."""
    if choice not in _logged:
        _logged.add(choice)
        log.info("auto: %s", choice.reason)


def forget_loaded_models() -> None:
    """Drop the registry's loaded models (each spec loads once per process otherwise), to free memory."""
    from prelabel.models.registry import load_detector, load_segmenter, load_tracker  # torch, as in build_labeler

    load_detector.cache_clear()
    load_segmenter.cache_clear()
    load_tracker.cache_clear()


def planned_models(settings: Settings) -> dict[str, str | None]:
    """What :attr:`Labeler.models` will be for these settings, without loading anything."""
    settings = resolved(settings)
    models = {"detector": runtime_model_id(settings.detector, settings.detector_runtime) if settings.detector else None,
              "segmenter": runtime_model_id(settings.segmenter, settings.sam_runtime, settings.sam_precision)
              if settings.segmenter else None,
              "dtype": settings.dtype}
    if settings.video_tracker:
        models["tracker"] = settings.video_tracker
    return models


def planned_model_version(settings: Settings, labels: Sequence[LabelPrompt],
                          calibration: Scoring | None = None, explore: Exploration | None = None,
                          video: Mapping[str, Any] | None = None) -> str:
    """The ``model_version`` that :func:`build_labeler` ``(settings)`` will report, without loading models."""
    settings = resolved(settings)
    random = any(is_random(spec or None) for spec in (settings.detector, settings.segmenter, settings.video_tracker))
    thresholds = {**config_dict(labeler_thresholds(settings), explore), **({"video": dict(video)} if video else {})}
    return model_version(planned_models(settings), labels, thresholds, random,
                         {"calibration": calibration.to_dict()} if calibration else None)
