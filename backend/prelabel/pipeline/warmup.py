"""Converting a labeler's models ahead of a job (``prelabel warmup``, container builds): the SAM encoder's OpenVINO
model, and Grounding DINO's at each image shape the job will see, so that no job and no server start converts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.core.video import IMAGE_SUFFIXES
from prelabel.models.detector_openvino import OpenVinoDetectorRuntime, shapes_for
from prelabel.models.grounding_dino import GroundingDinoDetector
from prelabel.models.runtimes import OpenVinoImageEncoder, RuntimeUnavailable
from prelabel.pipeline.labeler import Labeler

log = logging.getLogger(__name__)

# (height, width) of the images most jobs see when none are given: a 4:3 photo and a 16:9 video frame.
COMMON_SIZES = ((3000, 4000), (1080, 1920))
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class Converted:
    """What warming up one model did: ``converted`` (seconds > 0), ``cached`` (already there), or ``failed``."""

    model: str
    outcome: str
    seconds: float = 0.0
    note: str = ""

    def line(self) -> str:
        done = f"converted in {self.seconds:.0f} s" if self.outcome == "converted" else self.outcome
        return f"{self.model}: {done}" + (f" ({self.note})" if self.note else "")


def warm_up(labeler: Labeler, labels: Sequence[LabelPrompt], sizes: Iterable[tuple[int, int]] = COMMON_SIZES,
            ) -> list[Converted]:
    """Convert and compile every model of ``labeler`` that a runtime converts, one at a time, in child processes
    (each under its memory limit); the detector at each image size in ``sizes`` with ``labels``' prompts."""
    done: list[Converted] = []
    segmenter = labeler.segmenter
    encoder = getattr(segmenter, "encoder", None)
    if isinstance(encoder, OpenVinoImageEncoder):
        name, cached = f"SAM encoder {segmenter.model_id}", encoder.runtime == "openvino"
        try:
            encoder.prepare()
        except RuntimeUnavailable as exc:
            done.append(Converted(name, "failed", note=str(exc)))
        else:
            done.append(Converted(name, "cached" if cached else "converted", encoder.convert_seconds,
                                  str(encoder.path.parent)))
    detector = labeler.detector
    runtime = detector.accelerator if isinstance(detector, GroundingDinoDetector) else None
    if isinstance(runtime, OpenVinoDetectorRuntime):
        texts = [chunk.text for chunk in detector.chunk_prompts(labels)]
        for shape in shapes_for(detector.model, detector.processor, texts, sizes):
            name = f"detector {detector.model_id} at {shape[0]}×{shape[1]}, text {shape[2]}"
            cached, before = runtime.cached(shape) is not None, len(runtime.conversions)
            if not runtime.prepare(shape):
                done.append(Converted(name, "failed", note="see the log"))
                continue
            report = runtime.conversions[before] if len(runtime.conversions) > before else {}
            peak = f"peak {int(report['peak_bytes']) / 1024**3:.1f} GiB" if report else ""
            done.append(Converted(name, "cached" if cached else "converted", float(report.get("seconds", 0.0)), peak))
    return done


def image_sizes(paths: Iterable[Path]) -> list[tuple[int, int]]:
    """The distinct (height, width) of the images at ``paths`` (files or folders) as they are labeled (EXIF
    orientation applied), read from their headers."""
    paths = list(paths)
    files = [p for path in paths for p in (sorted(path.rglob("*")) if path.is_dir() else [path])
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise PrelabelError(f"--images: no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    sizes: list[tuple[int, int]] = []
    for file in files:
        try:
            with Image.open(file) as image:
                width, height = image.size
                rotated = image.getexif().get(0x0112) in _ROTATED
        except OSError as exc:  # Pillow's errors for a file that is not an image (UnidentifiedImageError included)
            log.warning("--images: skipping %s (%s)", file, exc)
            continue
        size = (width, height) if rotated else (height, width)
        if size not in sizes:
            sizes.append(size)
    return sizes
