"""``prelabel bench``: prelabel vs the naive reference pipeline, and the speed/accuracy of every option."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import sys
import time
from importlib import resources
from pathlib import Path

import torch

from prelabel.bench.hardware import cpu_features, cpu_model
from prelabel.bench.images import BenchImage
from prelabel.bench.report import Report
from prelabel.bench.sections import SECTIONS, Bench, native_half
from prelabel.bench.timing import rss_mb
from prelabel.cli.common import add_parser, model_args
from prelabel.core.errors import PrelabelError
from prelabel.core.images import decode_image
from prelabel.core.labels import parse_labels
from prelabel.models.devices import pick_device
from prelabel.pipeline import build_labeler
from prelabel.pipeline.build import resolved, with_overrides
from prelabel.pipeline.warmup import warm_up
from prelabel.settings import Settings

log = logging.getLogger(__name__)

SECTION_NAMES = ("mainjob", "throughput", "click", "decoder", "memory", "runtimes", "detector_runtimes", "half",
                 "segmenters", "profile", "floor", "detectors", "video", "large_image")
# Not in a default run (which stays under 10 minutes on 2 CPU cores): emulated bf16 takes minutes per forward,
# SAM 3 at full size minutes per image, a video's keyframes one full detector pass each, and a 64 MP image's
# 100 tiles as many.
OPT_IN = ("half", "detectors", "video", "large_image")
FULL_FAMILIES = ("random-full-slimsam-50", "random-full-slimsam-77", "random-full-sam2-tiny", "random-full-sam2-small")
IMAGES = ("chelsea.jpg", "astronaut.jpg", "coffee.jpg", "rocket.jpg")  # bundled photos (assets/LICENSES.md)
LABELS = "cat,person,cup=coffee cup|mug,rocket"


def _counts(text: str) -> tuple[int, ...]:
    """``--regions``: comma-separated positive counts (a usage error, exit 2, otherwise)."""
    counts = tuple(int(n) for n in text.split(",") if n.strip().isdigit())
    if len(counts) != len(text.split(",")) or min(counts, default=0) < 1:
        raise argparse.ArgumentTypeError(f"takes comma-separated counts such as 5,25,100, not {text!r}")
    return counts


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    bench = add_parser(sub, "bench",
                       description="Ratios measured side by side in one run (medians over interleaved repeats), "
                                   "with targets marked met/missed. Random weights: timings only.")
    model_args(bench, settings)
    bench.set_defaults(detector=None, segmenter=None, box_threshold=0.0, text_threshold=0.0, func=run_bench)
    bench.add_argument("--quick", action="store_true", help="smoke run on random-tiny models (seconds)")
    bench.add_argument("--sections", default=None,
                       help=f"comma-separated, from {','.join(SECTION_NAMES)} (default: all but 'detectors' (every "
                            f"detector family side by side; SAM 3 takes minutes per image on a CPU), 'video' and "
                            f"'large_image' (100 tiles of a 64 MP photo), and "
                            f"'half' only where the device has native fp16/bf16 kernels)")
    bench.add_argument("--repeats", type=int, default=2, help="interleaved repeats per comparison (median)")
    bench.add_argument("--clicks", type=int, default=5, help="interactive clicks per image in the realistic mix")
    bench.add_argument("--boxes", type=int, default=5, help="boxes segmented per pre-label request")
    bench.add_argument("--regions", default=None, type=_counts,
                       help="comma-separated regions per image of the mainjob and decoder sections (default: 5,25,100; "
                            "5,25 with --quick)")
    bench.add_argument("--requests", type=int, default=None, help="requests for the memory section (default 500)")
    bench.add_argument("--vit-h", action="store_true", help="also time SAM ViT-H in the segmenters section (slow)")
    bench.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    bench.add_argument("--out", type=Path, default=Path("bench-results/bench"),
                       help="write OUT.json and OUT.md (default bench-results/bench)")


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Load the models once, run the chosen sections, print the table, write JSON + Markdown."""
    device = pick_device(args.device)
    if args.sections is None:
        sections = [s for s in SECTION_NAMES if s not in OPT_IN or (s == "half" and native_half(device))]
    else:
        sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise PrelabelError(f"unknown bench sections {', '.join(unknown)}; choose from {', '.join(SECTION_NAMES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    size = "tiny" if args.quick else "full"
    regions = args.regions or ((5, 25) if args.quick else (5, 25, 100))
    detector, segmenter = args.detector or f"random-{size}", args.segmenter or f"random-{size}"
    families = ("random-tiny-sam2",) if args.quick else FULL_FAMILIES + (("random-full-vit-h",) if args.vit_h else ())
    started = time.perf_counter()
    features = cpu_features()
    log.info("CPU %s, flags found: %s; torch threads %d", cpu_model(), " ".join(features) or "none",
             torch.get_num_threads())
    settings = resolved(with_overrides(settings, detector=detector, segmenter=segmenter, device=device,
                                       dtype=args.dtype, sam_runtime=args.sam_runtime,
                                       detector_runtime=args.detector_runtime, box_threshold=args.box_threshold, text_threshold=args.text_threshold,
                                       max_detections=args.boxes))  # auto resolved once, as the labeler's
    labeler = build_labeler(settings)
    assets = resources.files("prelabel") / "assets"
    images = [BenchImage(name, (assets / name).read_bytes(), decode_image((assets / name).read_bytes()))
              for name in IMAGES]
    # The sections time converted models with the cache filled (mainjob also times a first run, empty cache):
    # what `prelabel warmup` does, for the bench images' sizes.
    for item in warm_up(labeler, parse_labels(LABELS), sorted({image.pixels.shape[:2] for image in images})):
        log.info("warm-up: %s", item.line())
    load_seconds = time.perf_counter() - started
    report = Report(environment={
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "prelabel " + " ".join(sys.argv[1:]),
        "detector": detector, "segmenter": segmenter, "sam_runtime": settings.sam_runtime,
        "detector_runtime": settings.detector_runtime, "random_weights": labeler.random_weights, "device": device, "dtype": settings.dtype,
        "cpu_model": cpu_model(), "cpu_features": " ".join(features) or "none found",
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or
        platform.machine(), "load_average_at_start": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "model_load_seconds": round(load_seconds, 1), "repeats": args.repeats,
    })
    bench = Bench(labeler, images, parse_labels(LABELS), report, detector, segmenter, device, settings.dtype,
                  settings.cache_mb, args.repeats, args.clicks, args.requests or (40 if args.quick else 500),
                  families, tuple(sections), rss_loaded_mb=rss_mb(), runtime_cache=settings.runtime_cache,
                  sam_runtime=settings.sam_runtime, detector_runtime=settings.detector_runtime, region_counts=regions)
    if labeler.random_weights:
        log.warning("random-weight models: timings are real, the regions are not predictions")
    logging.getLogger("prelabel.access").setLevel(logging.WARNING)  # hundreds of in-process requests
    try:
        for name in sections:
            log.info("bench section %s ...", name)
            section_started = time.perf_counter()
            SECTIONS[name](bench)
            report.details.setdefault("section_seconds", {})[name] = round(time.perf_counter() - section_started, 1)
    finally:
        if bench.server is not None:
            bench.server.close()
    report.environment["total_seconds"] = round(time.perf_counter() - started, 1)
    print(report.table())
    json_path, md_path = report.write(args.out)
    log.info("wrote %s and %s (%.0f s in all)", json_path, md_path, report.environment["total_seconds"])
    return 0
