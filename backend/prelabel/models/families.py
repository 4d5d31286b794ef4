"""Detector families beyond Grounding DINO: the class each family builds, and SAM 3's tracker as a segmenter.

Which family a spec is (a ``random-*`` name, or the ``model_type`` of a folder's or hub model's config) is
:func:`prelabel.models.specs.detector_family`'s answer; the registry asks :func:`load_family_detector` for the
model. Grounding DINO itself stays in the registry.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, Sam3Model, Sam3TrackerModel

from prelabel.models import open_vocab
from prelabel.models.omdet_turbo import load_omdet_turbo
from prelabel.models.random_sam3 import SAM3_SPECS, TRACKER_FOLDER, build_sam3
from prelabel.models.sam3 import Sam3ConceptSegmenter, Sam3Preprocessor, Sam3TrackerSegmenter
from prelabel.models.specs import model_type_of, preprocessor_folder


def load_family_detector(spec: str, family: str, random_weights: bool, device: str, dtype: torch.dtype,
                         cache_bytes: int = 512 * 1024**2):
    """The detector object of ``family`` for ``spec`` (random spec, local folder or hub id)."""
    if family == "sam3":
        return load_sam3(spec, random_weights, device, dtype, cache_bytes)
    if family == "owlv2":
        return open_vocab.load_owlv2(spec, random_weights, device, dtype)
    if family == "mm-grounding-dino":
        return open_vocab.load_mm_grounding_dino(spec, random_weights, device, dtype)
    if family == "omdet-turbo":
        return load_omdet_turbo(spec, random_weights, device, dtype)
    raise ValueError(f"unknown detector family {family!r}")


def load_sam3(spec: str, random_weights: bool, device: str, dtype: torch.dtype, cache_bytes: int):
    """SAM 3 from ``random-*-sam3``, a ``save_pretrained`` folder (``sam3``, optional ``tracker/``) or ``sam3_video``.

    The tracker shares the concept model's ViT when their backbone weights are equal (always so in
    ``facebook/sam3``, whose tracker checkpoint maps the detector's backbone); otherwise it keeps its own.
    """
    if random_weights:
        model, tracker, tokenizer, preprocessor = build_sam3(spec)
        return Sam3ConceptSegmenter(model, tokenizer, Sam3Preprocessor.from_dict(preprocessor), spec, True, device,
                                    dtype, cache_bytes, tracker)
    model = Sam3Model.from_pretrained(spec)
    tokenizer = AutoTokenizer.from_pretrained(spec)
    preprocessor = Sam3Preprocessor.from_pretrained(preprocessor_folder(spec))
    tracker = None
    folder = Path(spec).expanduser()
    if (folder / TRACKER_FOLDER / "config.json").is_file():
        tracker = Sam3TrackerModel.from_pretrained(folder / TRACKER_FOLDER)
    elif model_type_of(spec) in (None, "sam3_video"):  # hub id or a facebook/sam3 snapshot: both models inside
        tracker = Sam3TrackerModel.from_pretrained(spec)
    if tracker is not None and _same_weights(tracker.vision_encoder.backbone, model.vision_encoder.backbone):
        tracker.vision_encoder.backbone = model.vision_encoder.backbone
    return Sam3ConceptSegmenter(model, tokenizer, preprocessor, spec, False, device, dtype, cache_bytes, tracker)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def is_sam3_tracker_spec(spec: str) -> bool:
    """Whether a segmenter spec names SAM 3's tracker (a random SAM 3 spec or a SAM 3 / tracker folder)."""
    return spec in SAM3_SPECS or model_type_of(spec) in ("sam3_tracker", "sam3_video") or (
        model_type_of(spec) == "sam3" and (Path(spec).expanduser() / TRACKER_FOLDER / "config.json").is_file())


def load_sam3_tracker_segmenter(spec: str, device: str, dtype: torch.dtype, cache_bytes: int):
    """SAM 3's tracker alone as a box/point segmenter (its own ViT), e.g. behind another detector."""
    if spec in SAM3_SPECS:
        _, tracker, _, preprocessor = build_sam3(spec)
        return Sam3TrackerSegmenter(tracker, spec, True, device, dtype, cache_bytes,
                                    preprocessor=Sam3Preprocessor.from_dict(preprocessor))
    folder = Path(spec).expanduser()
    source = folder / TRACKER_FOLDER if (folder / TRACKER_FOLDER / "config.json").is_file() else folder
    tracker = Sam3TrackerModel.from_pretrained(source)
    config = next((p / "preprocessor_config.json" for p in (source, folder) if (p / "preprocessor_config.json").is_file()),
                  None)
    preprocessor = Sam3Preprocessor.from_pretrained(config.parent) if config is not None else None
    return Sam3TrackerSegmenter(tracker, spec, False, device, dtype, cache_bytes, preprocessor=preprocessor)
