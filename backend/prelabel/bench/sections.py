"""The sections of ``prelabel bench``; each measures side by side in one run and adds rows to the report."""

from __future__ import annotations

import gc
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from transformers import SamProcessor

from prelabel.bench.report import Report, Row
from prelabel.bench.server import ServerHarness
from prelabel.bench.timing import Case, ModelTimer, interleaved, mask_iou, median, median_ratio, peak_rss_mb, rss_mb
from prelabel.geometry import box_iou
from prelabel.images import decode_image
from prelabel.labels import LabelPrompt
from prelabel.models.registry import load_detector, load_segmenter
from prelabel.models.sam import SamSegmenter
from prelabel.pipeline import Labeler

NAIVE_REFERENCE = Path(__file__).resolve().parents[3] / "benchmarks" / "naive_reference.py"


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
    server: ServerHarness | None = None
    rss_loaded_mb: float = 0.0
    section_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def segmenter(self) -> SamSegmenter:
        """The loaded segmenter (SAM or SAM 2.1): the bench also uses its cache and ``embed``."""
        return self.labeler.segmenter

    def clear_embeddings(self, *_: object) -> None:
        self.segmenter.cache.clear()


def load_naive_reference() -> ModuleType:
    """``benchmarks/naive_reference.py`` of the source checkout this package runs from."""
    if not NAIVE_REFERENCE.is_file():
        raise RuntimeError(f"the naive reference pipeline {NAIVE_REFERENCE} is missing: run `prelabel bench` from a "
                           f"source checkout (pip install -e .)")
    spec = importlib.util.spec_from_file_location("naive_reference", NAIVE_REFERENCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def throughput(b: Bench) -> None:
    """A realistic mix per image (one pre-label request, then clicks): prelabel vs the naive reference."""
    naive_module = load_naive_reference()
    det, seg = b.labeler.detector, b.segmenter
    if seg.image_processor is None:
        raise ValueError("the throughput section drives SAM (not SAM 2) the naive way: pass a SAM --segmenter")
    cfg = b.labeler.config
    naive = naive_module.NaiveReference(det.model, det.processor, seg.model, SamProcessor(seg.image_processor),
                                        cfg.box_threshold, cfg.text_threshold, cfg.max_detections)
    names = [label.name for label in b.labels]
    parts: dict[str, list[float]] = {"naive_prelabel": [], "naive_click": [], "ours_prelabel": [], "ours_click": []}
    boxes: dict[str, list[int]] = {"naive": [], "ours": []}

    def timed(key: str, fn: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = fn()
        parts[key].append(time.perf_counter() - started)
        return result

    def naive_mix(repeat: int) -> None:
        image = b.images[repeat % len(b.images)]
        boxes["naive"].append(len(timed("naive_prelabel", lambda: naive.prelabel(image.data, names))))
        for x, y in image.click_points(b.clicks):
            timed("naive_click", lambda: naive.click(image.data, (float(x), float(y))))

    def ours_mix(repeat: int) -> None:
        image = b.images[repeat % len(b.images)]
        regions = timed("ours_prelabel", lambda: b.labeler.predict(decode_image(image.data), b.labels))
        boxes["ours"].append(len(regions))
        for point in image.click_points(b.clicks):
            timed("ours_click", lambda: b.labeler.click(decode_image(image.data), point[None], np.ones(1, np.int64)))

    times = interleaved({"naive": Case(naive_mix), "prelabel": Case(ours_mix, b.clear_embeddings)}, b.repeats)
    mix = f"1 pre-label ({median(boxes['ours']):.0f} boxes) + {b.clicks} clicks per image, {b.repeats} images"
    b.report.add(
        Row("throughput", "mix speed-up vs naive (naive s / prelabel s)",
            median_ratio(times["naive"], times["prelabel"]), "x", (">=", 3.0), mix),
        Row("throughput", "prelabel mix seconds per image", median(times["prelabel"]), "s"),
        Row("throughput", "naive mix seconds per image", median(times["naive"]), "s"),
        Row("throughput", "pre-label request speed-up", median_ratio(parts["naive_prelabel"], parts["ours_prelabel"]),
            "x", None, "cold: both encode the image once"),
        Row("throughput", "click request speed-up", median(parts["naive_click"]) / median(parts["ours_click"]), "x",
            None, "naive re-encodes per click; prelabel reuses the cached embedding"),
        Row("throughput", "prelabel images per hour (mix)", 3600 / median(times["prelabel"]), "img/h"),
    )
    b.report.details["throughput"] = {"mix_seconds": times, "request_seconds": parts, "boxes_per_image": boxes}


def click(b: Bench) -> None:
    """An interactive click on a cached embedding vs a cold one (encoder + decoder)."""
    image = b.images[0].pixels
    point, label = b.images[0].click_points(1), np.ones(1, np.int64)
    times = interleaved({
        "cold": Case(lambda _: b.labeler.click(image, point, label), b.clear_embeddings),
        "cached": Case(lambda _: b.labeler.click(image, point, label), lambda _: b.segmenter.embed(image)),
    }, max(b.repeats, 3))
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


def server(b: Bench) -> None:
    """Share of a request's wall time outside the two models, through the Label Studio backend app."""
    harness = b.server = ServerHarness(b.labeler, b.images[: min(2, len(b.images))], b.labels)
    seg = b.segmenter
    modules = [b.labeler.detector.model, seg.model, seg.model.vision_encoder]
    split: dict[str, list[tuple[float, float]]] = {"prelabel": [], "click": []}
    for image in harness.images:
        b.clear_embeddings()
        requests = [("prelabel", lambda image=image: harness.prelabel(image))]
        requests += [("click", lambda image=image, p=p: harness.click(image, p)) for p in image.click_points(b.clicks)]
        for kind, send in requests:
            with ModelTimer(modules) as timer:
                started = time.perf_counter()
                send()
                wall = time.perf_counter() - started
            split[kind].append((wall, timer.seconds))

    def outside_share(pairs: list[tuple[float, float]]) -> float:
        wall = sum(w for w, _ in pairs)
        return (wall - sum(m for _, m in pairs)) / wall

    outside_click_ms = median(w - m for w, m in split["click"]) * 1000
    b.report.add(
        Row("server", "wall time outside the models, realistic mix", outside_share(split["prelabel"] + split["click"]),
            "share", ("<=", 0.05),
            f"1 pre-label + {b.clicks} clicks per image over HTTP, {len(harness.images)} images"),
        Row("server", "wall time outside the models, pre-label request", outside_share(split["prelabel"]), "share"),
        Row("server", "wall time outside the models, click request", outside_share(split["click"]), "share", None,
            f"{outside_click_ms:.0f} ms per click outside the decoder"),
    )
    b.report.details["server"] = split


def memory(b: Bench) -> None:
    """Resident memory: models loaded, peak, and after many cheap interactive requests (cache-bounded)."""
    harness = b.server or ServerHarness(b.labeler, b.images[:1], b.labels)
    b.server = harness
    for image in harness.images:  # embeddings in the cache before counting, so requests are cheap clicks
        b.segmenter.embed(image.pixels)
    gc.collect()
    before = rss_mb()
    points = [image.click_points(7) for image in harness.images]
    for i in range(b.requests):
        image_index = i % len(harness.images)
        harness.click(harness.images[image_index], points[image_index][(i // len(harness.images)) % 7])
    gc.collect()
    after = rss_mb()
    cache = b.segmenter.cache
    b.report.add(
        Row("memory", "RSS with both models loaded", b.rss_loaded_mb, "MiB"),
        Row("memory", "peak RSS so far", peak_rss_mb(), "MiB", None, "the bench process serves the app in-process"),
        Row("memory", f"RSS after {b.requests} more requests", after, "MiB"),
        Row("memory", f"RSS growth over {b.requests} requests", after - before, "MiB", ("<=", float(b.cache_mb)),
            f"cache budget {b.cache_mb} MiB, {cache.used_bytes / 1024**2:.0f} MiB used by {len(cache)} embeddings"),
    )


def runtimes(b: Bench) -> None:
    """Other runtimes of the SAM encoder on the SAME weights (CPU, fp32): speed ratio and mask IoU vs PyTorch."""
    if b.device != "cpu" or b.dtype != "fp32":
        b.report.add(Row("runtimes", "int8 / onnx encoder", 0.0, "-", None, "CPU fp32 options: not run on this setup"))
        return
    variants = {runtime: load_segmenter(b.segmenter_spec, b.device, "fp32", b.cache_mb, runtime)
                for runtime in ("int8", "onnx")}
    _compare_segmenters(b, "runtimes", {f"{name} encoder": seg for name, seg in variants.items()})
    b.report.add(Row("runtimes", "ONNX export at load", variants["onnx"].encoder.export_seconds, "s"))
    del variants
    load_segmenter.cache_clear()
    gc.collect()


def _compare_segmenters(b: Bench, section: str, variants: dict[str, SamSegmenter]) -> None:
    """Encoder time of each variant vs the loaded segmenter (interleaved), and the IoU of their masks for 10 boxes."""
    image = b.images[0].pixels
    reference = f"{b.dtype} torch"
    segmenters_ = {reference: b.segmenter, **variants}
    cases = {name: Case(lambda _, s=s: s.embed(image), lambda _, s=s: s.cache.clear())
             for name, s in segmenters_.items()}
    times = interleaved(cases, b.repeats)  # leaves every variant's embedding cached for the masks below
    boxes = random_boxes(image, 10)
    reference_masks, _ = b.segmenter.segment_boxes(image, boxes)
    for name, seg in variants.items():
        masks, _ = seg.segment_boxes(image, boxes)
        ious = [mask_iou(a, m) for a, m in zip(reference_masks, masks)]
        b.report.add(
            Row(section, f"SAM encoder speed-up, {name}", median_ratio(times[reference], times[name]), "x",
                None, f"{median(times[name]):.2f} s vs {median(times[reference]):.2f} s"),
            Row(section, f"mask IoU vs {reference}, {name}", min(ious), "min IoU", (">=", 0.98),
                f"{len(boxes)} boxes, mean {np.mean(ious):.4f}; >= 0.98 needed to be a default"),
        )
    b.report.details[section] = times


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
    _compare_segmenters(b, "half", {f"{lower} torch": load_segmenter(b.segmenter_spec, b.device, lower, b.cache_mb)})
    load_segmenter.cache_clear()
    image = b.images[0].pixels
    base = b.labeler.detector
    other = load_detector(b.detector_spec, b.device, lower)
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
    load_detector.cache_clear()
    gc.collect()


def segmenters(b: Bench) -> None:
    """Faster segmenter families (SlimSAM, SAM 2.1) vs the loaded SAM: image encoder time side by side.

    Random weights say nothing about their accuracy; the published figures are in docs/performance.md.
    """
    image = b.images[0].pixels
    variants = {b.segmenter_spec: b.segmenter}
    variants.update({spec: load_segmenter(spec, b.device, b.dtype, b.cache_mb) for spec in b.family_specs})
    cases = {name: Case(lambda _, s=s: s.embed(image), lambda _, s=s: s.cache.clear()) for name, s in variants.items()}
    times = interleaved(cases, b.repeats)
    for name, seg in variants.items():
        params = sum(p.numel() for p in seg.model.vision_encoder.parameters()) / 1e6
        b.report.add(Row("segmenters", f"image encoder, {name}", median(times[name]), "s", None,
                         f"{params:.1f} M encoder params; "
                         f"{median_ratio(times[b.segmenter_spec], times[name]):.2f}x vs {b.segmenter_spec}"))
    b.report.details["segmenters"] = times
    del variants
    load_segmenter.cache_clear()
    gc.collect()


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


SECTIONS: dict[str, Callable[[Bench], None]] = {
    "throughput": throughput, "click": click, "decoder": decoder, "server": server, "memory": memory,
    "runtimes": runtimes, "half": half, "segmenters": segmenters, "profile": profile,
}
