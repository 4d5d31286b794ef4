"""The sections of ``prelabel bench``; each measures side by side in one run and adds rows to the report."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm
from transformers import SamProcessor

from prelabel.bench.naive import NaiveReference
from prelabel.bench.report import Report, Row
from prelabel.bench.server import ServerHarness
from prelabel.bench.timing import Case, ModelTimer, interleaved, mask_iou, median, median_ratio, peak_rss_mb, rss_mb
from prelabel.core.errors import PrelabelError
from prelabel.core.geometry import box_iou
from prelabel.core.labels import LabelPrompt
from prelabel.models.cache import image_key
from prelabel.models.protocols import Detector
from prelabel.models.sam import SamSegmenter
from prelabel.pipeline import Labeler, build_labeler
from prelabel.pipeline.build import forget_loaded_models
from prelabel.settings import Settings


@dataclass
class BenchImage:
    """A test image as the bytes a request carries and as decoded pixels."""

    name: str
    data: bytes
    pixels: np.ndarray

    def click_points(self, count: int) -> np.ndarray:
        """``count`` fixed click positions spread over the image, ``(count, 2)`` pixels."""
        height, width = self.pixels.shape[:2]
        fractions = np.stack([np.linspace(0.3, 0.7, count), np.linspace(0.6, 0.4, count)], axis=1)
        return (fractions * [width, height]).astype(np.float32)


@dataclass
class Bench:
    """What every section needs: the loaded models, images, labels, and the run's options."""

    labeler: Labeler
    images: list[BenchImage]
    labels: list[LabelPrompt]
    report: Report
    detector_spec: str
    segmenter_spec: str
    device: str
    dtype: str
    cache_mb: int
    repeats: int = 2
    clicks: int = 5
    requests: int = 500
    family_specs: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()
    server: ServerHarness | None = None
    rss_loaded_mb: float = 0.0
    encoders: EncoderComparison | None = None

    @property
    def segmenter(self) -> SamSegmenter:
        """The loaded segmenter (SAM or SAM 2.1): the bench also uses its cache and ``embed``."""
        return self.labeler.segmenter

    def load_segmenter(self, spec: str, dtype: str, runtime: str = "torch") -> SamSegmenter:
        """Another segmenter on the bench's device (through the one builder)."""
        settings = Settings(detector="", segmenter=spec, device=self.device, dtype=dtype, cache_mb=self.cache_mb,
                            sam_runtime=runtime)
        return build_labeler(settings).segmenter

    def load_detector(self, spec: str, dtype: str) -> Detector:
        """Another detector on the bench's device (through the one builder)."""
        return build_labeler(Settings(detector=spec, segmenter="", device=self.device, dtype=dtype)).detector

    def clear_embeddings(self, *_: object) -> None:
        self.segmenter.cache.clear()

    def harness(self) -> ServerHarness:
        """The backend app serving the loaded models, started on first use and shared by the sections."""
        if self.server is None:
            self.server = ServerHarness(self.labeler, self.images, self.labels)
        return self.server


def throughput(b: Bench) -> None:
    """A realistic mix per image (one pre-label request, then clicks): prelabel served vs the naive reference.

    prelabel answers through the Label Studio backend app (task image fetched over loopback HTTP, Label
    Studio JSON out); the naive reference gets the image bytes handed to it. Forward hooks on the models
    split prelabel's wall time into model time and everything around it.
    """
    det, seg = b.labeler.detector, b.segmenter
    if seg.image_processor is None:
        raise PrelabelError("the throughput section drives SAM (not SAM 2) the naive way: pass a SAM --segmenter")
    cfg = b.labeler.config
    naive = NaiveReference(det.model, det.processor, seg.model, SamProcessor(seg.image_processor),
                                        cfg.box_threshold, cfg.text_threshold, cfg.max_detections)
    names = [label.name for label in b.labels]
    harness = b.harness()
    modules = [det.model, seg.model, seg.model.vision_encoder]
    naive_seconds: dict[str, list[float]] = {"prelabel": [], "click": []}
    served: dict[str, list[tuple[float, float]]] = {"prelabel": [], "click": []}  # (wall, inside the models)
    boxes: dict[str, list[int]] = {"naive": [], "ours": []}

    def naive_request(kind: str, send: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = send()
        naive_seconds[kind].append(time.perf_counter() - started)
        return result

    def served_request(kind: str, send: Callable[[], list[dict]]) -> list[dict]:
        with ModelTimer(modules) as timer:
            started = time.perf_counter()
            result = send()
            wall = time.perf_counter() - started
        served[kind].append((wall, timer.seconds))
        return result

    def naive_mix(repeat: int) -> None:
        image = b.images[repeat % len(b.images)]
        boxes["naive"].append(len(naive_request("prelabel", lambda: naive.prelabel(image.data, names))))
        for x, y in image.click_points(b.clicks):
            naive_request("click", lambda: naive.click(image.data, (float(x), float(y))))

    def ours_mix(repeat: int) -> None:
        image = b.images[repeat % len(b.images)]
        results = served_request("prelabel", lambda: harness.prelabel(image))
        boxes["ours"].append(sum(item["type"] == "rectanglelabels" for item in results[0]["result"]))
        for point in image.click_points(b.clicks):
            served_request("click", lambda: harness.click(image, point))

    times = interleaved({"naive": Case(naive_mix), "prelabel": Case(ours_mix, b.clear_embeddings)}, b.repeats)
    mix = f"1 pre-label ({median(boxes['ours']):.0f} boxes) + {b.clicks} clicks per image, {b.repeats} images"
    ours_seconds = {kind: [wall for wall, _ in pairs] for kind, pairs in served.items()}

    def outside_share(pairs: list[tuple[float, float]]) -> float:
        wall = sum(w for w, _ in pairs)
        return (wall - sum(m for _, m in pairs)) / wall

    outside_click_ms = median(w - m for w, m in served["click"]) * 1000
    b.report.add(
        Row("throughput", "mix speed-up vs naive (naive s / prelabel s)",
            median_ratio(times["naive"], times["prelabel"]), "x", (">=", 3.0), f"{mix}; prelabel over HTTP"),
        Row("throughput", "prelabel mix seconds per image", median(times["prelabel"]), "s"),
        Row("throughput", "naive mix seconds per image", median(times["naive"]), "s"),
        Row("throughput", "pre-label request speed-up",
            median_ratio(naive_seconds["prelabel"], ours_seconds["prelabel"]), "x", None,
            "cold: both encode the image once"),
        Row("throughput", "click request speed-up", median(naive_seconds["click"]) / median(ours_seconds["click"]),
            "x", None, "naive re-encodes per click; prelabel reuses the cached embedding"),
        Row("throughput", "prelabel images per hour (mix)", 3600 / median(times["prelabel"]), "img/h"),
        Row("throughput", "wall time outside the models, realistic mix",
            outside_share(served["prelabel"] + served["click"]), "share", ("<=", 0.05),
            "image fetch and decode, resizing, polygons, brush RLE, JSON, HTTP"),
        Row("throughput", "wall time outside the models, pre-label request", outside_share(served["prelabel"]),
            "share"),
        Row("throughput", "wall time outside the models, click request", outside_share(served["click"]), "share",
            None, f"{outside_click_ms:.0f} ms per click outside the decoder"),
    )
    b.report.details["throughput"] = {"mix_seconds": times, "naive_request_seconds": naive_seconds,
                                      "served_request_seconds": served, "boxes_per_image": boxes}


def click(b: Bench) -> None:
    """An interactive click on a cached embedding vs a cold one (encoder + decoder)."""
    image = b.images[0].pixels
    point, label = b.images[0].click_points(1), np.ones(1, np.int64)
    times = interleaved({
        "cold": Case(lambda _: b.labeler.click(image, point, label), b.clear_embeddings),
        "cached": Case(lambda _: b.labeler.click(image, point, label), lambda _: b.segmenter.embed(image)),
    }, b.repeats)
    b.report.add(
        Row("click", "cached click / cold click", median_ratio(times["cached"], times["cold"]), "ratio", ("<=", 0.05)),
        Row("click", "cold click", median(times["cold"]) * 1000, "ms"),
        Row("click", "cached click", median(times["cached"]) * 1000, "ms"),
    )
    b.report.details["click"] = times


def random_boxes(image: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` reproducible boxes inside the image, ``(count, 4)`` xyxy pixels, at least 4 px wide."""
    height, width = image.shape[:2]
    corners = np.random.default_rng(seed).uniform(0, 1, (count, 2, 2)) * [width - 4, height - 4]
    return np.concatenate([corners.min(axis=1), corners.max(axis=1) + 4], axis=1).astype(np.float32)


def decoder(b: Bench) -> None:
    """All boxes of an image in one SAM decoder call vs one call per box, on a cached embedding."""
    image = b.images[0].pixels
    b.segmenter.embed(image)
    for count in (1, 5, 20):
        boxes = random_boxes(image, count)
        times = interleaved({
            "batched": Case(lambda _: b.segmenter.segment_boxes(image, boxes)),
            "sequential": Case(lambda _: [b.segmenter.segment_boxes(image, box[None]) for box in boxes]),
        }, max(b.repeats, 3))
        b.report.add(Row("decoder", f"sequential / batched time, {count} boxes",
                         median_ratio(times["sequential"], times["batched"]), "x", None,
                         f"batched {median(times['batched']) * 1000:.0f} ms"))


def memory(b: Bench) -> None:
    """Resident memory: models loaded, peak, and after many cheap interactive requests (cache-bounded)."""
    harness = b.harness()
    # Clicks on the images whose embeddings an earlier section left cached (else the first, encoded once),
    # so every counted request is a cheap one through the whole app.
    images = [image for image in harness.images
              if image_key(image.pixels, b.segmenter.model_id) in b.segmenter.cache] or harness.images[:1]
    for image in images:
        b.segmenter.embed(image.pixels)
    gc.collect()
    before = rss_mb()
    points = [image.click_points(7) for image in images]
    for i in tqdm(range(b.requests), desc="memory: click requests", unit="req", file=sys.stderr,
                  leave=False, mininterval=1.0):
        image_index = i % len(images)
        harness.click(images[image_index], points[image_index][(i // len(images)) % 7])
    gc.collect()
    after = rss_mb()
    cache = b.segmenter.cache
    b.report.add(
        Row("memory", "RSS with both models loaded", b.rss_loaded_mb, "MiB"),
        Row("memory", "peak RSS so far", peak_rss_mb(), "MiB", None, "the bench process serves the app in-process"),
        Row("memory", f"RSS after {b.requests} more requests", after, "MiB"),
        Row("memory", f"RSS growth over {b.requests} requests", after - before, "MiB", ("<=", float(b.cache_mb)),
            f"cache budget {b.cache_mb} MiB, {len(cache)} cached embedding(s) use {cache.used_bytes / 1024**2:.0f} MiB"),
    )


REFERENCE = "reference"
"""The loaded segmenter's key in encoder timings."""


@dataclass
class EncoderComparison:
    """The image encoders the runtimes and segmenters sections compare, and their interleaved timings."""

    variants: dict[str, SamSegmenter]
    times: dict[str, list[float]]


def _encoder_comparison(b: Bench, section: str) -> EncoderComparison:
    """One interleaved timing of every image encoder the runtimes and segmenters sections compare.

    Made by whichever of the two runs first; when both are selected, the loaded segmenter is timed once,
    side by side with all the others.
    """
    if b.encoders is None:
        wanted = {*b.sections, section}
        variants: dict[str, SamSegmenter] = {}
        if "runtimes" in wanted and _runtimes_apply(b):
            variants.update({f"{runtime} encoder": b.load_segmenter(b.segmenter_spec, "fp32", runtime)
                             for runtime in ("int8", "onnx")})
        if "segmenters" in wanted:
            variants.update({spec: b.load_segmenter(spec, b.dtype) for spec in b.family_specs})
        b.encoders = EncoderComparison(variants, _time_encoders(b, variants))
        b.report.details["encoders"] = b.encoders.times
    return b.encoders


def _time_encoders(b: Bench, variants: dict[str, SamSegmenter]) -> dict[str, list[float]]:
    """Seconds per image encoding of the loaded segmenter and each variant, interleaved.

    Leaves every segmenter's embedding of the image cached, for the mask comparisons that follow.
    """
    image = b.images[0].pixels
    cases = {name: Case(lambda _, s=s: s.embed(image), lambda _, s=s: s.cache.clear())
             for name, s in {REFERENCE: b.segmenter, **variants}.items()}
    return interleaved(cases, b.repeats)


def _release(variants: dict[str, SamSegmenter]) -> None:
    """Free segmenters loaded for one comparison (the registry's cache holds them too)."""
    variants.clear()
    forget_loaded_models()
    gc.collect()


def _runtimes_apply(b: Bench) -> bool:
    return b.device == "cpu" and b.dtype == "fp32"


def runtimes(b: Bench) -> None:
    """Other runtimes of the SAM encoder on the SAME weights (CPU, fp32): speed ratio and mask IoU vs PyTorch."""
    if not _runtimes_apply(b):
        b.report.add(Row("runtimes", "int8 / onnx encoder", 0.0, "-", None, "CPU fp32 options: not run on this setup"))
        return
    comparison = _encoder_comparison(b, "runtimes")
    variants = {name: comparison.variants.pop(name) for name in ("int8 encoder", "onnx encoder")}
    _agreement_rows(b, "runtimes", variants, comparison.times)
    b.report.add(Row("runtimes", "ONNX export at load", variants["onnx encoder"].encoder.export_seconds, "s"))
    _release(variants)


def _agreement_rows(b: Bench, section: str, variants: dict[str, SamSegmenter], times: dict[str, list[float]]) -> None:
    """Each variant's encoder speed-up over the loaded segmenter and the IoU of their masks for 10 fixed boxes."""
    image = b.images[0].pixels
    reference = f"{b.dtype} torch"
    boxes = random_boxes(image, 10)
    reference_masks, _ = b.segmenter.segment_boxes(image, boxes)
    for name, seg in variants.items():
        masks, _ = seg.segment_boxes(image, boxes)
        ious = [mask_iou(a, m) for a, m in zip(reference_masks, masks)]
        b.report.add(
            Row(section, f"SAM encoder speed-up, {name}", median_ratio(times[REFERENCE], times[name]), "x",
                None, f"{median(times[name]):.2f} s vs {median(times[REFERENCE]):.2f} s"),
            Row(section, f"mask IoU vs {reference}, {name}", min(ious), "min IoU", (">=", 0.98),
                f"{len(boxes)} boxes, mean {np.mean(ious):.4f}; >= 0.98 needed to be a default"),
        )


def native_half(device: str) -> bool:
    """Whether the device runs fp16/bf16 natively (CUDA, or a CPU whose oneDNN has bf16 kernels)."""
    return device.startswith("cuda") or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@torch.inference_mode()
def half(b: Bench) -> None:
    """bf16 (CPU) / fp16 (GPU) of both models vs the loaded precision: speed, mask IoU, and box IoU per query.

    In the default sections only where the device has native half-precision kernels: on other CPUs bf16 is
    emulated and one Grounding DINO forward takes minutes.
    """
    lower = "fp16" if b.device.startswith("cuda") else "bf16"
    variants = {f"{lower} torch": b.load_segmenter(b.segmenter_spec, lower)}
    times = _time_encoders(b, variants)
    _agreement_rows(b, "half", variants, times)
    b.report.details["half"] = times
    _release(variants)
    image = b.images[0].pixels
    base = b.labeler.detector
    other = b.load_detector(b.detector_spec, lower)
    chunk = base.chunk_prompts(b.labels)[0]
    outputs = {}  # the last output of each: every query's boxes and label scores
    times = interleaved({name: Case(lambda _, d=d, name=name: outputs.__setitem__(name, d._run_chunk(image, chunk)))
                         for name, d in (("base", base), ("lower", other))}, b.repeats)
    (ref_boxes, ref_scores, _), (boxes, _, _) = outputs["base"], outputs["lower"]
    top = np.argsort(-ref_scores.max(axis=1))[: max(b.labeler.config.max_detections, 1)]
    ious = np.diag(box_iou(ref_boxes[top], boxes[top]))
    invalid = int(np.isnan(ious).sum())  # NaN boxes from an overflowing half-precision forward count as misses
    ious = np.nan_to_num(ious, nan=0.0)
    b.report.add(
        Row("half", f"Grounding DINO speed-up, {lower}", median_ratio(times["base"], times["lower"]), "x",
            None, f"{median(times['lower']):.2f} s vs {median(times['base']):.2f} s"),
        Row("half", f"box IoU vs {b.dtype}, Grounding DINO {lower}", float(ious.min()), "min IoU",
            (">=", 0.98), f"top {len(top)} queries, mean {ious.mean():.4f}, {invalid} NaN boxes"),
    )
    del other
    forget_loaded_models()
    gc.collect()


def segmenters(b: Bench) -> None:
    """Faster segmenter families (SlimSAM, SAM 2.1) vs the loaded SAM: image encoder time side by side.

    Random weights say nothing about their accuracy; the published figures are in docs/performance.md.
    """
    comparison = _encoder_comparison(b, "segmenters")
    families = {spec: comparison.variants.pop(spec) for spec in b.family_specs}
    times = comparison.times
    for name, seg in {b.segmenter_spec: b.segmenter, **families}.items():
        seconds = times[REFERENCE if seg is b.segmenter else name]
        params = sum(p.numel() for p in seg.model.vision_encoder.parameters()) / 1e6
        b.report.add(Row("segmenters", f"image encoder, {name}", median(seconds), "s", None,
                         f"{params:.1f} M encoder params; "
                         f"{median_ratio(times[REFERENCE], seconds):.2f}x vs {b.segmenter_spec}"))
    _release(families)


@torch.inference_mode()
def profile(b: Bench) -> None:
    """torch.profiler over one Grounding DINO forward and one SAM image encoding: where the time goes."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    image = b.images[0].pixels
    chunk = b.labeler.detector.chunk_prompts(b.labels)[0]
    b.clear_embeddings()
    jobs = {"grounding_dino": lambda: b.labeler.detector._run_chunk(image, chunk),
            "sam_image_encoder": lambda: b.segmenter.embed(image)}
    b.report.details["profile"] = {}
    for name, job in jobs.items():
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            job()
        averages = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in averages) or 1
        top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:3]
        b.report.details["profile"][name] = averages.table(sort_by="self_cpu_time_total", row_limit=12)
        b.report.add(Row("profile", f"{name}: top op share", top[0].self_cpu_time_total / total, "share", None,
                         ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in top)))


def detectors(b: Bench) -> None:
    """Every detector family on the same image and labels, interleaved: Grounding DINO, MM Grounding DINO,
    OWLv2, OmDet-Turbo and SAM 3 (whose time includes its masks: it needs no segmenter). Cold = first image, vision
    features computed; SAM 3 caches them, so a second label set on the same image is timed warm too."""
    image = b.images[0].pixels
    size = "tiny" if b.detector_spec == "random-tiny" else "full"
    specs = {"Grounding DINO": b.detector_spec, "MM Grounding DINO": f"random-{size}-mm-grounding-dino",
             "OWLv2": f"random-{size}-owlv2", "OmDet-Turbo": f"random-{size}-omdet-turbo",
             "SAM 3 (masks included)": f"random-{size}-sam3"}
    loaded = {name: b.load_detector(spec, b.dtype) for name, spec in specs.items()}
    sam3 = loaded["SAM 3 (masks included)"]
    times = interleaved({name: Case(lambda _, d=d: d.detect(image, b.labels, 0.0, 0.0),
                                    (lambda _, d=d: d.cache.clear()) if hasattr(d, "cache") else None)
                         for name, d in loaded.items()}, b.repeats)
    warm = interleaved({"SAM 3 warm": Case(lambda _: sam3.detect(image, b.labels[:1], 0.0, 0.0))}, b.repeats)
    reference = median(times["Grounding DINO"])
    for name, seconds in times.items():
        b.report.add(Row("detectors", f"{name} seconds per image, {len(b.labels)} labels", median(seconds), "s",
                         None, f"{specs[name]}; {reference / median(seconds):.2f}x Grounding DINO's speed"))
    b.report.add(Row("detectors", "SAM 3 one more label on a cached image", median(warm["SAM 3 warm"]), "s", None,
                     "vision features from the cache: the text/DETR/mask side only"))
    b.report.details["detectors"] = {"specs": specs, "seconds": times, "sam3_warm_seconds": warm["SAM 3 warm"]}
    loaded.clear()
    forget_loaded_models()
    gc.collect()


def video(b: Bench) -> None:
    """Video: frames/s of pre-labeling (keyframe detection every 10th frame, linked tracks, interpolation between)
    and of propagating boxes with the SAM 2.1 video tracker, on a synthetic clip of a moving square; RSS growth."""
    import tempfile
    from pathlib import Path

    import cv2

    from prelabel.core.video import VideoSource
    from prelabel.pipeline.video import VideoConfig, VideoLabeler

    size = "tiny" if b.detector_spec == "random-tiny" else "full"
    frames, (width, height) = (40, (160, 96)) if size == "tiny" else (60, (640, 360))
    tracker_spec = "random-tiny-sam2-video" if size == "tiny" else "random-full-sam2-tiny-video"
    tracked = 10
    before = rss_mb()
    with tempfile.TemporaryDirectory(prefix="prelabel-bench-video-") as tmp:
        path = Path(tmp) / "clip.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
        for i in range(frames):
            frame = np.full((height, width, 3), 30, np.uint8)
            x = 10 + (3 * i) % max(width - 60, 1)
            cv2.rectangle(frame, (x, height // 3), (x + 48, height // 3 + 48), (230, 230, 230), -1)
            writer.write(frame)
        writer.release()
        source = VideoSource(path)
        prelabeler = VideoLabeler(b.labeler, VideoConfig(every=10 if size == "tiny" else 20))
        labels = b.labels[:2]
        times = interleaved({"prelabel": Case(lambda _: prelabeler.prelabel(source, labels))}, b.repeats)
        tracker = build_labeler(Settings(detector="", segmenter="", device=b.device, video_tracker=tracker_spec))
        propagator = VideoLabeler(tracker)
        box = np.array([[10, height // 3, 58, height // 3 + 48]], np.float32)
        moved = interleaved({"propagate": Case(lambda _: propagator.propagate(source, 0, box, [0], ["square"],
                                                                            frames=tracked))}, b.repeats)
    b.report.add(
        Row("video", f"pre-labeling frames/s ({width}x{height}, keyframe every {prelabeler.config.every}th, interpolation)",
            frames / median(times["prelabel"]), "frames/s", None, f"{frames} frames, {len(labels)} labels"),
        Row("video", f"propagation frames/s, SAM 2.1 video ({tracker_spec}), 1 box",
            tracked / median(moved["propagate"]), "frames/s", None, f"{tracked} frames, windowed memory"),
        Row("video", "RSS growth over the video section", rss_mb() - before, "MiB", None,
            "bounded: frames are streamed, tracker memory is a window"),
    )
    b.report.details["video"] = {"prelabel_seconds": times["prelabel"], "propagate_seconds": moved["propagate"],
                                 "frames": frames, "tracked_frames": tracked}
    forget_loaded_models()
    gc.collect()


SECTIONS: dict[str, Callable[[Bench], None]] = {
    "throughput": throughput, "click": click, "decoder": decoder, "memory": memory,
    "runtimes": runtimes, "half": half, "segmenters": segmenters, "profile": profile, "detectors": detectors,
    "video": video,
}
