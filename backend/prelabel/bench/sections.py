"""The sections of ``prelabel bench``; each measures side by side in one run and adds rows to the report."""

from __future__ import annotations

import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile
from tqdm import tqdm
from transformers import SamProcessor

from prelabel.batch.checkpoint import Checkpoint
from prelabel.batch.outputs import FORMATS, write_outputs
from prelabel.batch.records import ImageItem
from prelabel.batch.runner import BatchOptions, label_item
from prelabel.bench.hardware import count_flops, cpu_features, matmul_peak
from prelabel.bench.images import BenchImage
from prelabel.bench.naive import NaiveReference
from prelabel.bench.report import Report, Row
from prelabel.bench.server import ServerHarness
from prelabel.bench.timing import (
    Case,
    ModelTimer,
    interleaved,
    mask_iou,
    median,
    median_ratio,
    peak_rss_during,
    peak_rss_mb,
    rss_mb,
)
from prelabel.core.errors import PrelabelError
from prelabel.core.geometry import box_iou
from prelabel.core.images import decode_image
from prelabel.core.labels import LabelPrompt
from prelabel.core.video import VideoSource
from prelabel.labelstudio.tasks import TaskConfig
from prelabel.models.cache import image_key
from prelabel.models.detector_openvino import MAX_COMPILED, OpenVinoDetectorRuntime, shape_of
from prelabel.models.grounding_dino import GroundingDinoDetector
from prelabel.models.protocols import Detector
from prelabel.models.runtimes import openvino_available
from prelabel.models.sam import ImageEmbedding, SamSegmenter
from prelabel.models.sam_decoder import FastBoxDecoder
from prelabel.pipeline import Labeler, build_labeler
from prelabel.pipeline.build import forget_loaded_models
from prelabel.pipeline.tiling import tile_windows
from prelabel.pipeline.video import VideoConfig, VideoLabeler
from prelabel.settings import Settings


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
    runtime_cache: str = "~/.cache/prelabel"
    sam_runtime: str = "torch"
    detector_runtime: str = "torch"
    flops: dict[str, float] = field(default_factory=dict)  # per image, counted once (floor section)
    region_counts: tuple[int, ...] = (5, 25, 100)  # regions per image of the mainjob and decoder sections

    @property
    def segmenter(self) -> SamSegmenter:
        """The loaded segmenter (SAM or SAM 2.1): the bench also uses its cache and ``embed``."""
        return self.labeler.segmenter

    def load_segmenter(self, spec: str, dtype: str, runtime: str = "torch", precision: str = "fp32") -> SamSegmenter:
        """Another segmenter on the bench's device (through the one builder), exactly as named: no ``auto``."""
        settings = Settings(detector="", segmenter=spec, device=self.device, dtype=dtype, cache_mb=self.cache_mb,
                            sam_runtime=runtime, runtime_cache=self.runtime_cache, sam_precision=precision)
        segmenter = build_labeler(settings).segmenter
        segmenter.prepare_runtime()  # converted now: the bench times the converted encoder
        return segmenter

    def first_run_labeler(self, runtime_cache: str, max_detections: int) -> Labeler:
        """The bench's models and runtimes as a first run builds them: a runtime cache with nothing converted (so
        each runtime's own policy decides what to convert), told the job is ``self.repeats`` images."""
        settings = Settings(detector=self.detector_spec, segmenter=self.segmenter_spec, device=self.device,
                            dtype=self.dtype, cache_mb=self.cache_mb, sam_runtime=self.sam_runtime,
                            detector_runtime=self.detector_runtime, runtime_cache=runtime_cache,
                            **{**self.labeler.config.as_settings(), "max_detections": max_detections})
        labeler = build_labeler(settings)
        labeler.expect_images(self.repeats)
        return labeler

    def load_detector(self, spec: str, dtype: str) -> Detector:
        """Another detector on the bench's device (through the one builder)."""
        return build_labeler(Settings(detector=spec, segmenter="", device=self.device, dtype=dtype)).detector

    def clear_embeddings(self, *_: object) -> None:
        self.segmenter.cache.clear()

    def torch_segmenter(self) -> SamSegmenter:
        """The loaded segmenter's weights with a PyTorch fp32 encoder: the reference every runtime is judged by."""
        if self.segmenter.model_id == self.segmenter_spec and self.segmenter.dtype == torch.float32:
            return self.segmenter
        return self.load_segmenter(self.segmenter_spec, "fp32", "torch")

    def naive(self, max_boxes: int | None = None) -> NaiveReference:
        """The naive reference on the loaded models' weights (PyTorch, eager; SAM's own PyTorch encoder), keeping
        ``max_boxes`` boxes per image (the labeler's ``max_detections`` by default)."""
        det, seg = self.labeler.detector, self.segmenter
        if seg.image_processor is None:
            raise PrelabelError("the naive reference drives SAM (not SAM 2): pass a SAM --segmenter")
        cfg = self.labeler.config
        return NaiveReference(det.model, det.processor, seg.model, SamProcessor(seg.image_processor),
                              cfg.box_threshold, cfg.text_threshold or 0.0, max_boxes or cfg.max_detections)

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
    naive = b.naive()
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

    encoder = seg.encoder  # another runtime's encoder is timed by wrapping it (it has no forward hooks)

    def served_request(kind: str, send: Callable[[], list[dict]]) -> list[dict]:
        with ModelTimer(modules) as timer:
            seg.encoder = timer.wrap(encoder)
            try:
                started = time.perf_counter()
                result = send()
                wall = time.perf_counter() - started
            finally:
                seg.encoder = encoder
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


def mainjob(b: Bench) -> None:
    """The main job, batch pre-labeling (boxes + masks, checkpoint records and COCO / Label Studio files written
    through the batch code path), vs the naive pipeline of the model cards on the same weights and images, at each
    of ``b.region_counts`` regions per image (the detector's ``max_detections``; dense scenes reach 100).

    The naive side (:meth:`NaiveReference.prelabel_batched`) is PyTorch fp32 eager with the processors'
    post-processing, one SAM encoder call and one batched decoder call per image. Image ``i`` of both is
    repeat ``i``; the two alternate (interleaved) so the machine's load hits both alike.
    """
    details = {}
    for count in b.region_counts:
        details[count] = _mainjob_at(b, count)
    b.report.details["mainjob"] = details[max(b.region_counts)] | {"by_regions": details}


def _mainjob_at(b: Bench, count: int) -> dict:
    warm = Labeler(b.labeler.detector, b.labeler.segmenter, replace(b.labeler.config, max_detections=count),
                   b.labeler.dtype, b.labeler.tracker)
    naive = b.naive(count)
    names = [label.name for label in b.labels]
    options = BatchOptions(with_masks=True)
    out_dir = Path(tempfile.mkdtemp(prefix="prelabel-bench-batch-"))
    first = b.first_run_labeler(str(out_dir / "empty-runtime-cache"), count)
    config = TaskConfig.for_images(b.labels, with_masks=True)
    checkpoint = Checkpoint.open(out_dir / "checkpoint.jsonl", {"bench": "mainjob"}, restart=True)
    regions = {"naive": [], "prelabel": [], "first run": []}

    def ours(labeler: Labeler, name: str) -> Callable[[int], None]:
        def run(repeat: int) -> None:
            image = b.images[repeat % len(b.images)]
            item = ImageItem(f"{repeat:05d}-{name}-{image.name}", image.name)
            record = label_item(labeler, b.labels, options, item, lambda _item: decode_image(image.data))
            checkpoint.append(record)
            write_outputs(out_dir, {item.key: record}, b.labels, ("coco", "labelstudio"), config)
            regions[name].append(len(record.get("regions", [])))
        return run

    def naive_run(repeat: int) -> None:
        regions["naive"].append(len(naive.prelabel_batched(b.images[repeat % len(b.images)].data, names)))

    try:
        times = interleaved({"naive": Case(naive_run), "prelabel": Case(ours(warm, "prelabel"), b.clear_embeddings),
                             "first run": Case(ours(first, "first run"))}, b.repeats)
    finally:
        checkpoint.close()
        shutil.rmtree(out_dir, ignore_errors=True)
    native = native_half(b.device)
    ratio = median_ratio(times["naive"], times["prelabel"])
    first_encoder = getattr(first.segmenter, "encoder", None)
    b.report.add(
        Row("mainjob", f"main job speed-up vs naive, {count} regions per image (naive s / prelabel s)", ratio, "x",
            (">=", 3.0) if native else None,
            f"{b.repeats} images, {median(regions['prelabel']):.0f} masks each (naive "
            f"{median(regions['naive']):.0f}); dtype {b.dtype}, SAM encoder {b.sam_runtime}, converted models cached"
            + ("" if native else "; the 3x target is for CPUs with native bf16")),
        Row("mainjob", f"first run speed-up vs naive, {count} regions per image (empty runtime cache)",
            median_ratio(times["naive"], times["first run"]), "x", (">=", 1.25),
            f"{median(times['first run']):.2f} s per image; the SAM encoder ran "
            f"{getattr(first_encoder, 'runtime', 'torch')} (a {b.repeats}-image job converts only what pays off)"),
        Row("mainjob", f"prelabel images per hour, {count} regions per image", 3600 / median(times["prelabel"]),
            "img/h", None, f"{median(times['prelabel']):.2f} s per image, outputs written; naive "
            f"{median(times['naive']):.2f} s"),
    )
    return {"seconds": times, "regions": regions}


LARGE_SIDE = 8000  # a 64 MP drone / aerial photo
LARGE_TILE = 1024


def large_image(b: Bench) -> None:
    """A 64 MP photo through the batch path with ``--tile 1024``: labeling (the checkpoint record included), then
    every output format; the time and the peak RSS rise of each, next to the full-frame masks they no longer hold."""
    count = max(b.region_counts)
    labeler = Labeler(b.labeler.detector, b.labeler.segmenter, replace(b.labeler.config, max_detections=count),
                      b.labeler.dtype, b.labeler.tracker)
    image = cv2.resize(b.images[0].pixels, (LARGE_SIDE, LARGE_SIDE), interpolation=cv2.INTER_LINEAR)
    item = ImageItem("large.jpg", "large.jpg")
    options = BatchOptions(with_masks=True, tile=LARGE_TILE)
    config = TaskConfig.for_images(b.labels, with_masks=True)
    out_dir = Path(tempfile.mkdtemp(prefix="prelabel-bench-large-"))
    record: dict = {}
    seconds: dict[str, float] = {}

    def timed(name: str, run: Callable[[], object]) -> Callable[[], None]:
        def go() -> None:
            started = time.perf_counter()
            run()
            seconds[name] = time.perf_counter() - started
        return go

    try:
        gc.collect()
        label_mb = peak_rss_during(timed("label", lambda: record.update(
            label_item(labeler, b.labels, options, item, lambda _item: image))))
        gc.collect()
        outputs_mb = peak_rss_during(timed("outputs", lambda: write_outputs(out_dir, {item.key: record}, b.labels,
                                                                            FORMATS, config)))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    regions = len(record.get("regions", []))
    full_frame_mb = regions * LARGE_SIDE * LARGE_SIDE / 1024**2
    tiles = len(tile_windows(LARGE_SIDE, LARGE_SIDE, LARGE_TILE, options.overlap))
    b.report.add(
        Row("large_image", f"peak RSS rise, labeling a 64 MP image, {regions} regions, --tile {LARGE_TILE}", label_mb,
            "MiB", ("<=", 2048.0), f"{seconds['label']:.1f} s for {tiles} tiles; the image itself is "
            f"{image.nbytes / 1024**2:.0f} MiB; full-frame masks would be {full_frame_mb:.0f} MiB"),
        Row("large_image", f"peak RSS rise, writing every output format of it ({', '.join(FORMATS)})", outputs_mb,
            "MiB", ("<=", 1024.0), f"{seconds['outputs']:.1f} s, regions decoded from the checkpoint record into "
            f"box crops"),
    )
    b.report.details["large_image"] = {"seconds": seconds, "regions": regions, "tiles": tiles,
                                       "peak_rise_mb": {"label": label_mb, "outputs": outputs_mb}}


def _count_model_flops(b: Bench) -> None:
    """FLOPs per image of Grounding DINO (the bench's labels, one prompt) and of SAM's image encoder."""
    image = b.images[0].pixels
    detector = b.labeler.detector
    chunk = detector.chunk_prompts(b.labels)[0]
    if "grounding_dino" not in b.flops:
        b.flops["grounding_dino"] = count_flops(lambda: detector._run_chunk(image, chunk))
    if "sam_image_encoder" not in b.flops:
        reference = b.torch_segmenter()
        pixels = reference.preprocess(image)[0].to(b.device, reference.dtype)
        with torch.inference_mode():
            b.flops["sam_image_encoder"] = count_flops(lambda: reference.model.get_image_embeddings(pixels))
    if "sam_decoder_per_region" not in b.flops:
        boxes = random_boxes(image, 8)
        b.segmenter.embed(image)  # cached: only the decoder and its post-processing are counted
        b.flops["sam_decoder_per_region"] = count_flops(lambda: b.segmenter.segment_boxes(image, boxes)) / 8


def floor(b: Bench) -> None:
    """The hardware floor: each model's FLOPs (counted once) over the machine's measured matmul peak per dtype,
    and the main job's measured time over that floor."""
    _count_model_flops(b)
    features = cpu_features()
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        peaks[name] = matmul_peak(dtype, "cuda" if b.device.startswith("cuda") else "cpu")
    regions = max(b.region_counts)
    flops = b.flops["grounding_dino"] + b.flops["sam_image_encoder"] + regions * b.flops["sam_decoder_per_region"]
    b.report.environment["cpu_features"] = " ".join(features) or "none found"
    b.report.add(
        Row("floor", "Grounding DINO work per image", b.flops["grounding_dino"] / 1e9, "GFLOP", None,
            f"FlopCounterMode, {b.images[0].name}, the processor's 800-px short side"),
        Row("floor", "SAM image encoder work per image", b.flops["sam_image_encoder"] / 1e9, "GFLOP", None,
            "1024x1024 (padded)"),
        Row("floor", "SAM mask decoder work per region", b.flops["sam_decoder_per_region"] / 1e9, "GFLOP", None,
            f"prelabel's box path; the floor counts {regions} regions per image, as the main job's largest row"),
    )
    for name, (gflops, side) in peaks.items():
        b.report.add(Row("floor", f"matmul peak, {name}", gflops, "GFLOP/s", None,
                         f"{side}x{side}, {torch.get_num_threads()} threads; CPU flags: {' '.join(features) or '-'}"))
    for name in ("fp32", "bf16"):
        b.report.add(Row("floor", f"floor per image, {name}", flops / (peaks[name][0] * 1e9), "s", None,
                         f"both models' FLOPs at the matmul peak, {regions} regions per image"))
    seconds = b.report.details.get("mainjob", {}).get("seconds", {}).get("prelabel")
    if seconds:
        used = b.dtype if b.dtype in peaks else "fp32"
        floor_s = flops / (peaks[used][0] * 1e9)
        naive_s = median(b.report.details["mainjob"]["seconds"]["naive"])
        b.report.add(
            Row("floor", f"main job time / floor ({used})", median(seconds) / floor_s, "x", ("<=", 2.0),
                f"{median(seconds):.2f} s per image vs a {floor_s:.2f} s floor"),
            Row("floor", f"naive time / floor ({used})", naive_s / floor_s, "x"),
            Row("floor", "main job time / bf16 floor", median(seconds) / (flops / (peaks["bf16"][0] * 1e9)), "x",
                None, "what bf16 could reach if both models met the accuracy bar in it"),
        )
    b.report.details["floor"] = {"flops": b.flops, "matmul_peak_gflops": {k: v[0] for k, v in peaks.items()},
                                 "cpu_features": features}


CLOSE_REPEATS = 30  # pairs of clicks when two cases differ by ~1% (each a decoder run: ~40 ms on full-size SAM)


def click(b: Bench) -> None:
    """An interactive click on a cached embedding, on a cold one (encoder + decoder), and the first click on a
    pre-labeled image in a process that did not encode it: with the embedding store (read + decoder) and without
    (what every new worker, replica or restart paid before the store)."""
    seg, image = b.segmenter, b.images[0].pixels
    point, label = b.images[0].click_points(1), np.ones(1, np.int64)
    kept = seg.store
    with tempfile.TemporaryDirectory(prefix="prelabel-bench-store-") as folder:
        seg.use_store(folder, 2 * 1024**3, b.sam_runtime)
        store = seg.store
        seg.cache.clear()
        seg.embed(image)  # the pre-label: encodes and writes the entry
        entry_bytes = Path(store.path(image_key(image, seg.model_id))).stat().st_size

        def fresh_process(with_store: bool) -> Callable[[int], None]:
            def setup(_: int) -> None:
                seg.cache.clear()
                seg.store = store if with_store else None
            return setup

        def warm(_: int) -> None:
            seg.store = store
            seg.embed(image)

        def one_click(_: int) -> None:
            b.labeler.click(image, point, label)

        try:
            times = interleaved({
                "cold": Case(one_click, fresh_process(with_store=False)),
                "store": Case(one_click, fresh_process(with_store=True)),
            }, b.repeats)
            # Store vs cached differ by a read (~1% of a click): many cheap pairs, so that load noise cancels.
            close = interleaved({
                "store": Case(one_click, fresh_process(with_store=True)),
                "cached": Case(one_click, warm),
            }, max(b.repeats, CLOSE_REPEATS))
            points = b.images[0].click_points(b.clicks)
            fresh_process(with_store=False)(0)  # the fp32 embedding, encoded in this process
            fp32 = [b.labeler.click(image, p[None], label)[0] for p in points]
            fresh_process(with_store=True)(0)  # the fp16 entry
            agreement = min(mask_iou(a, b.labeler.click(image, p[None], label)[0]) for a, p in zip(fp32, points))
        finally:
            seg.store = kept
            seg.cache.clear()
    cold, stored, cached = median(times["cold"]), median(times["store"]), median(close["cached"])
    shapes = ", ".join("x".join(map(str, shape)) for shape in store.shapes or ())
    b.report.add(
        Row("click", "cached click / cold click", cached / cold, "ratio", ("<=", 0.05), "medians"),
        Row("click", "cold click", cold * 1000, "ms"),
        Row("click", "cached click", cached * 1000, "ms"),
        Row("click", "first click on a pre-labeled image, embedding store on / off",
            median_ratio(times["store"], times["cold"]), "ratio", ("<=", 0.05),
            f"{stored * 1000:.0f} ms from the store vs {cold * 1000:.0f} ms encoding"),
        Row("click", "first click from the store / cached click", median_ratio(close["store"], close["cached"]),
            "ratio", ("<=", 1.05), f"the store read is the only difference ({len(close['store'])} pairs)"),
        Row("click", "bytes per stored embedding", entry_bytes / 1024**2, "MiB", None, f"fp16 safetensors: {shapes}"),
        Row("click", f"click mask IoU, stored fp16 entry vs fp32 embedding (min of {len(points)} clicks)", agreement,
            "IoU", (">=", 0.99)),
    )
    b.report.details["click"] = {**times, "store_vs_cached": close, "store_entry_bytes": entry_bytes}


def random_boxes(image: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` reproducible boxes inside the image, ``(count, 4)`` xyxy pixels, at least 4 px wide."""
    height, width = image.shape[:2]
    corners = np.random.default_rng(seed).uniform(0, 1, (count, 2, 2)) * [width - 4, height - 4]
    return np.concatenate([corners.min(axis=1), corners.max(axis=1) + 4], axis=1).astype(np.float32)


DENSE_SIZE = (1200, 1600)  # (H, W): the dense-image decoder row's photo


def transformers_boxes(seg: SamSegmenter, embedding: ImageEmbedding, boxes: np.ndarray) -> np.ndarray:
    """The plain path a user writes: ``SamModel`` on the cached embedding with every box, the best of 3 masks by
    predicted IoU, the processor's ``post_process_masks`` on all of them at once."""
    with torch.inference_mode():
        out = seg.model(image_embeddings=embedding.embeddings, input_boxes=seg.box_prompts(boxes, embedding)[None],
                        multimask_output=True)
        iou = out.iou_scores[0]
        rows, best = torch.arange(len(boxes)), iou.argmax(dim=-1)
        low_res = out.pred_masks[0][rows, best].float()
    return seg.image_processor.post_process_masks([low_res[None]], [embedding.original_size],
                                                  [embedding.reshaped_size])[0][0].numpy()


def decoder(b: Bench) -> None:
    """SAM's mask decoder on a dense image: N boxes on the cached embedding of a 1600x1200 photo, prelabel's path
    (the restructured decoder, per-mask post-processing) vs the transformers call + ``post_process_masks``, on the
    same weights: time, peak memory beyond the bool masks, and the masks' agreement."""
    seg = b.segmenter
    if getattr(seg, "box_decoder", None) is None:
        b.report.add(Row("decoder", "restructured box decoder", 0.0, "-", None,
                         f"{b.segmenter_spec} keeps its model's own decoder"))
        return
    height, width = DENSE_SIZE
    image = cv2.resize(b.images[0].pixels, (width, height), interpolation=cv2.INTER_LINEAR)
    embedding = seg.embed(image)
    for count in b.region_counts:
        boxes = random_boxes(image, count)
        times = interleaved({"transformers": Case(lambda _: transformers_boxes(seg, embedding, boxes)),
                             "prelabel": Case(lambda _: seg.segment_boxes(image, boxes))}, max(b.repeats, 2))
        ours, _ = seg.segment_boxes(image, boxes)
        plain = transformers_boxes(seg, embedding, boxes)
        ious = [mask_iou(a, c) for a, c in zip(ours, plain)]
        differing = max(int((a != c).sum()) for a, c in zip(ours, plain))
        b.report.add(
            Row("decoder", f"transformers / prelabel time, {count} boxes, {width}x{height}",
                median_ratio(times["transformers"], times["prelabel"]), "x", (">=", 2.5) if count >= 100 else None,
                f"prelabel {median(times['prelabel']) / count * 1000:.1f} ms per box, transformers "
                f"{median(times['transformers']) / count * 1000:.1f}; embedding cached"),
            Row("decoder", f"mask IoU vs transformers, {count} boxes", min(ious), "min IoU", (">=", 0.98),
                f"min {min(ious):.6f}; {sum(i == 1.0 for i in ious)} of {count} identical, at most {differing} "
                f"pixels of a mask differ (logits within float rounding of 0)"),
        )
    count = max(b.region_counts)
    boxes = random_boxes(image, count)
    if b.device == "cpu" and native_half(b.device):
        _bf16_upscaling_rows(b, seg, embedding, boxes)
    result_mb = count * height * width / 1024**2  # the bool masks both paths return
    gc.collect()
    ours_mb = peak_rss_during(lambda: seg.segment_boxes(image, boxes))
    gc.collect()
    plain_mb = peak_rss_during(lambda: transformers_boxes(seg, embedding, boxes))
    b.report.add(
        Row("decoder", f"peak RSS rise, prelabel, {count} boxes", ours_mb, "MiB", ("<=", round(result_mb + 512)),
            f"sampled every 2 ms; the bool masks themselves: {result_mb:.0f} MiB (target: them + 512 MiB)"),
        Row("decoder", f"peak RSS rise, transformers, {count} boxes", plain_mb, "MiB", None,
            f"{plain_mb - result_mb:.0f} MiB beyond the bool masks"),
    )


def _bf16_upscaling_rows(b: Bench, seg: SamSegmenter, embedding: ImageEmbedding, boxes: np.ndarray) -> None:
    """The box decoder with its upscaling in bf16 (``--sam-precision bf16``) vs all fp32, side by side on the same
    cached embedding: time, and every mask's judged IoU (the bar of the SAM precision default)."""
    model_boxes = seg.box_prompts(boxes, embedding).to(seg.device, seg.dtype)
    decoders = {"fp32": FastBoxDecoder(seg.model), "bf16": FastBoxDecoder(seg.model, upscale_dtype=torch.bfloat16)}
    times = interleaved({name: Case(lambda _, d=d: d(embedding.embeddings, model_boxes))
                         for name, d in decoders.items()}, max(b.repeats, 2))
    judged = judged_ious(*(d(embedding.embeddings, model_boxes)[0].float() for d in decoders.values()))
    b.report.add(
        Row("decoder", f"box decoder fp32 / bf16 upscaling, {len(boxes)} boxes", median_ratio(times["fp32"],
            times["bf16"]), "x", None, f"{median(times['bf16']):.2f} s vs {median(times['fp32']):.2f} s; the "
            "attention and the IoU head stay fp32"),
        Row("decoder", f"judged mask IoU, bf16 upscaling vs fp32, {len(boxes)} boxes (every mask)",
            float(judged.min()), "min IoU", (">=", 0.98), f"mean {judged.mean():.4f}; each mask's pixels whose fp32 "
            "|logit| is above its median"),
    )


DETECTOR_SIZES = ((800, 1202), (800, 800))  # (height, width): the processor's shapes for 2:3 and square photos


@torch.inference_mode()
def detector_runtimes(b: Bench) -> None:
    """Grounding DINO through OpenVINO (f32, and the bf16 hint) vs transformers fp32 eager on the same weights, at
    two image shapes: warm time per image, every query's box matched order-free (random weights saturate the
    scores, so query order and top-k mean nothing), the conversion's seconds and peak memory (a child process),
    and the resident memory a compiled model adds."""
    base = b.labeler.detector
    if not isinstance(base, GroundingDinoDetector) or b.device != "cpu" or not openvino_available():
        b.report.add(Row("detector_runtimes", "OpenVINO Grounding DINO", 0.0, "-", None,
                         "needs a Grounding DINO detector, the CPU and openvino installed"))
        return
    original, chunk = base.accelerator, base.chunk_prompts(b.labels)[0]
    pad = base.processor.tokenizer.pad_token_id
    try:
        for height, width in DETECTOR_SIZES:
            image = cv2.resize(b.images[0].pixels, (width, height), interpolation=cv2.INTER_LINEAR)
            runtimes = {precision: OpenVinoDetectorRuntime(base.model, pad, b.runtime_cache, precision)
                        for precision in ("fp32", "bf16")}
            inputs = base.processor(images=image, text=chunk.text, return_tensors="pt")
            shape = shape_of(dict(inputs), runtimes["fp32"].max_text_length)
            gc.collect()
            before_mb = rss_mb()
            prepared = runtimes["fp32"].prepare(shape)  # the conversion runs in a child: this rise is the compiled model
            compiled_mb = rss_mb() - before_mb
            if not (prepared and runtimes["bf16"].prepare(shape)):
                b.report.add(Row("detector_runtimes", f"OpenVINO at {width}x{height}", 0.0, "-", None,
                                 "the conversion failed (see the log); PyTorch runs this shape"))
                continue
            cases = {"torch": None, **{f"openvino {p}": r for p, r in runtimes.items()}}
            outputs: dict[str, tuple[np.ndarray, np.ndarray, list[int]]] = {}

            def run(name: str) -> None:
                base.accelerator = cases[name]
                outputs[name] = base._run_chunk(image, chunk)

            times = interleaved({name: Case(lambda _, name=name: run(name)) for name in cases}, max(b.repeats, 3))
            conversion = runtimes["fp32"].conversions[0] if runtimes["fp32"].conversions else None
            made = (f"converted in {conversion['seconds']:.0f} s, child peak {conversion['peak_bytes'] / 1024**3:.1f} "
                    f"GiB" if conversion else "converted model from the disk cache")
            reference = outputs["torch"][0]
            for name in ("openvino fp32", "openvino bf16"):
                best = np.nan_to_num(box_iou(reference.astype(float), outputs[name][0].astype(float))).max(axis=1)
                b.report.add(
                    Row("detector_runtimes", f"transformers fp32 / {name} time, {width}x{height}",
                        median_ratio(times["torch"], times[name]), "x",
                        (">=", 3.0) if name.endswith("fp32") and (height, width) == DETECTOR_SIZES[0] else None,
                        f"{median(times[name]):.2f} s vs {median(times['torch']):.2f} s per image (warm); {made}"),
                    Row("detector_runtimes", f"matched box IoU, {name} vs fp32, {width}x{height}", float(best.mean()),
                        "mean IoU", (">=", 0.99), f"{(best >= 0.9).mean():.1%} of {len(best)} query boxes at "
                        f"IoU >= 0.9 (bar 97%); min {best.min():.3f}"))
            b.report.add(Row("detector_runtimes", f"resident memory of the compiled fp32 model, {width}x{height}",
                             compiled_mb, "MiB", None, "RSS rise over its compilation (the conversion's own peak "
                             "is in the child process, above); one such model per cached shape, at most "
                             f"{MAX_COMPILED} in memory"))
            base.accelerator = None
            for held in (runtimes, cases, outputs):
                held.clear()  # the compiled models (~1 GiB each) go before the next shape's
            gc.collect()
    finally:
        base.accelerator = original


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
"""The PyTorch fp32 encoder of the loaded weights: the key every encoder timing is compared with."""

# name: (dtype, SAM runtime, SAM precision); "openvino bf16" also runs the box decoder's upscaling in bf16
RUNTIME_VARIANTS = {"int8 encoder": ("fp32", "int8", "fp32"), "onnx encoder": ("fp32", "onnx", "fp32"),
                    "openvino encoder": ("fp32", "openvino", "fp32"),
                    "openvino bf16 encoder": ("fp32", "openvino", "bf16")}


@dataclass
class EncoderComparison:
    """The image encoders the runtimes and segmenters sections compare, and their interleaved timings."""

    reference: SamSegmenter
    variants: dict[str, SamSegmenter]
    times: dict[str, list[float]]
    load_seconds: dict[str, float]


def _encoder_comparison(b: Bench, section: str) -> EncoderComparison:
    """One interleaved timing of every image encoder the runtimes and segmenters sections compare.

    Made by whichever of the two runs first; when both are selected, the PyTorch reference is timed once,
    side by side with all the others. A runtime the loaded labeler already uses is that same object (the
    registry loads each spec once), so its conversion is not paid twice.
    """
    if b.encoders is None:
        wanted = {*b.sections, section}
        variants: dict[str, SamSegmenter] = {}
        load_seconds: dict[str, float] = {}
        if "runtimes" in wanted and _runtimes_apply(b):
            for name, (dtype, runtime, precision) in RUNTIME_VARIANTS.items():
                if runtime == "openvino" and not openvino_available():
                    continue
                started = time.perf_counter()
                variants[name] = b.load_segmenter(b.segmenter_spec, dtype, runtime, precision)
                load_seconds[name] = time.perf_counter() - started
        if "segmenters" in wanted:
            variants.update({spec: b.load_segmenter(spec, "fp32" if b.dtype == "auto" else b.dtype)
                             for spec in b.family_specs})
        reference = b.torch_segmenter()
        b.encoders = EncoderComparison(reference, variants, _time_encoders(b, reference, variants), load_seconds)
        b.report.details["encoders"] = b.encoders.times
    return b.encoders


def _time_encoders(b: Bench, reference: SamSegmenter, variants: dict[str, SamSegmenter]) -> dict[str, list[float]]:
    """Seconds per image encoding of the reference segmenter and each variant, interleaved.

    Leaves every segmenter's embedding of the image cached, for the mask comparisons that follow.
    """
    image = b.images[0].pixels
    cases = {name: Case(lambda _, s=s: s.embed(image), lambda _, s=s: s.cache.clear())
             for name, s in {REFERENCE: reference, **variants}.items()}
    return interleaved(cases, b.repeats)


def _release(variants: dict[str, SamSegmenter]) -> None:
    """Free segmenters loaded for one comparison (the registry's cache holds them too)."""
    variants.clear()
    forget_loaded_models()
    gc.collect()


def _runtimes_apply(b: Bench) -> bool:
    return b.device == "cpu"


def runtimes(b: Bench) -> None:
    """Other runtimes of the SAM encoder on the SAME weights (CPU): speed ratio, mask IoU and embedding error
    vs PyTorch fp32, conversion time (cached on disk) and the start of a converted encoder from the cache."""
    if not _runtimes_apply(b):
        b.report.add(Row("runtimes", "int8 / onnx / openvino encoder", 0.0, "-", None, "CPU options: not run here"))
        return
    comparison = _encoder_comparison(b, "runtimes")
    variants = {name: comparison.variants.pop(name) for name in RUNTIME_VARIANTS if name in comparison.variants}
    _agreement_rows(b, "runtimes", comparison.reference, variants, comparison.times)
    for name, seg in variants.items():
        encoder = seg.encoder
        if hasattr(encoder, "convert_seconds"):
            b.report.add(Row("runtimes", f"conversion at load, {name}", encoder.convert_seconds, "s", None,
                             "0 = found in the on-disk cache" if encoder.convert_seconds == 0 else
                             f"cached in {encoder.path.parent}"))
    if "openvino encoder" in variants:
        _restart_rows(b, variants["openvino encoder"])
    _release(variants)


def _restart_rows(b: Bench, seg: SamSegmenter) -> None:
    """A restart with the converted model on disk: a new encoder (weights hash, IR read, compile) and its
    first encoding, measured in this process (the OS file cache is warm, as on a restarted server)."""
    image = b.images[0].pixels
    pixels = seg.preprocess(image)[0]
    started = time.perf_counter()
    fresh = type(seg.encoder)(seg.model, pixels.shape[-1], b.runtime_cache, seg.encoder.precision)
    ready = time.perf_counter() - started
    started = time.perf_counter()
    fresh(pixels)
    first = time.perf_counter() - started
    b.report.add(Row("runtimes", "OpenVINO start from the cache (hash + read + compile)", ready, "s", ("<=", 10.0),
                     f"conversion {fresh.convert_seconds:.0f} s (0 = cached); the first encoding then took "
                     f"{first:.1f} s"))


def _agreement_rows(b: Bench, section: str, reference: SamSegmenter, variants: dict[str, SamSegmenter],
                    times: dict[str, list[float]]) -> None:
    """Each variant's encoder speed-up over the reference, the IoU of their masks for 10 fixed boxes and the
    relative error of the image embedding (random weights put many mask logits near 0, where rounding
    alone flips pixels: the embedding error tells precision loss from a mask that is merely on the edge)."""
    image = b.images[0].pixels
    boxes = random_boxes(image, 10)
    reference_masks, _ = reference.segment_boxes(image, boxes)
    reference_embedding = _first(reference.embed(image).embeddings).float()
    judged_boxes = random_boxes(image, JUDGED_BOXES, seed=1)
    reference_logits = reference.box_logits(image, judged_boxes) if reference.box_decoder is not None else None
    for name, seg in variants.items():
        masks, _ = seg.segment_boxes(image, boxes)
        ious = [mask_iou(a, m) for a, m in zip(reference_masks, masks)]
        embedding = _first(seg.embed(image).embeddings).float()
        error = float((embedding - reference_embedding).norm() / reference_embedding.norm())
        b.report.add(
            Row(section, f"SAM encoder speed-up, {name}", median_ratio(times[REFERENCE], times[name]), "x",
                None, f"{median(times[name]):.2f} s vs {median(times[REFERENCE]):.2f} s"),
            Row(section, f"mask IoU vs fp32 torch, {name}", min(ious), "min IoU", (">=", 0.98),
                f"{len(boxes)} boxes, mean {np.mean(ious):.4f}, median {np.median(ious):.4f}; embedding relative "
                f"error {error:.1e}; >= 0.98 needed to be a default"),
        )
        if reference_logits is not None and seg.box_decoder is not None:
            judged = judged_ious(reference_logits, seg.box_logits(image, judged_boxes))
            b.report.add(Row(section, f"judged mask IoU vs fp32 torch, {name} (every mask)", float(judged.min()),
                             "min IoU", (">=", 0.98),
                             f"{len(judged)} boxes, mean {judged.mean():.4f}; each mask's pixels whose fp32 |logit| "
                             f"is above its median (random weights put half the logits within rounding of 0)"))


JUDGED_BOXES = 50  # masks judged per runtime: "every mask" of a dense image


def judged_ious(reference: torch.Tensor, other: torch.Tensor) -> np.ndarray:
    """Per mask, the IoU of ``logit > 0`` of two runs over the pixels where the reference's |logit| is above that
    mask's median |logit|: random-weight SAM logits sit near 0 (~±0.002, below bf16's resolution), where plain
    IoU measures rounding, not the runtime (``shared/perf-recipes.md`` §3)."""
    ious = []
    for ref, out in zip(reference, other, strict=True):
        magnitude = ref.abs()
        confident = magnitude > magnitude.median()
        ious.append(mask_iou(((ref > 0) & confident).numpy(), ((out > 0) & confident).numpy()))
    return np.asarray(ious)


def _first(embeddings: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return embeddings[0] if isinstance(embeddings, tuple) else embeddings


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
    reference = b.torch_segmenter()
    times = _time_encoders(b, reference, variants)
    _agreement_rows(b, "half", reference, variants, times)
    b.report.details["half"] = times
    _release(variants)
    image = b.images[0].pixels
    base = b.labeler.detector
    other = b.load_detector(b.detector_spec, lower)
    chunk = base.chunk_prompts(b.labels)[0]
    outputs = {}  # the last output of each: every query's boxes and label scores
    times = interleaved({name: Case(lambda _, d=d, name=name: outputs.__setitem__(name, d._run_chunk(image, chunk)))
                         for name, d in (("base", base), ("lower", other))}, b.repeats)
    (ref_boxes, ref_scores, _), (boxes, scores, _) = outputs["base"], outputs["lower"]
    top = np.argsort(-ref_scores.max(axis=1), kind="stable")[: max(b.labeler.config.max_detections, 1)]
    # Grounding DINO picks its queries by a top-k over encoder scores, so query i of one precision need not
    # be query i of the other: each top box is matched to its best-overlapping box of the other run.
    invalid = int(np.isnan(boxes).any(axis=1).sum() + np.isnan(scores).any(axis=1).sum())
    pairwise = np.nan_to_num(box_iou(ref_boxes[top].astype(float), np.nan_to_num(boxes).astype(float)), nan=0.0)
    ious = pairwise.max(axis=1) if invalid == 0 else np.zeros(len(top))  # NaN outputs count as misses
    b.report.add(
        Row("half", f"Grounding DINO speed-up, {lower}", median_ratio(times["base"], times["lower"]), "x",
            None, f"{median(times['lower']):.2f} s vs {median(times['base']):.2f} s"),
        Row("half", f"box IoU vs {b.dtype}, Grounding DINO {lower}", float(ious.min()), "min IoU",
            (">=", 0.98), f"top {len(top)} queries, each matched to its best box; mean {ious.mean():.4f}; "
            f"{invalid} queries with NaN; fp32 islands: {getattr(other, 'fp32_islands', 0)} deformable attentions"),
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
    for name, seg in {b.segmenter_spec: comparison.reference, **families}.items():
        seconds = times[REFERENCE if name == b.segmenter_spec else name]
        params = sum(p.numel() for p in seg.model.vision_encoder.parameters()) / 1e6
        b.report.add(Row("segmenters", f"image encoder, {name}", median(seconds), "s", None,
                         f"{params:.1f} M encoder params; "
                         f"{median_ratio(times[REFERENCE], seconds):.2f}x vs {b.segmenter_spec}"))
    _release(families)


@torch.inference_mode()
def profile(b: Bench) -> None:
    """torch.profiler over one Grounding DINO forward and one SAM image encoding: where the time goes."""
    image = b.images[0].pixels
    chunk = b.labeler.detector.chunk_prompts(b.labels)[0]
    reference = b.torch_segmenter()  # the PyTorch encoder: another runtime's kernels are opaque to the profiler
    pixels = reference.preprocess(image)[0].to(b.device, reference.dtype)
    jobs = {"grounding_dino": lambda: b.labeler.detector._run_chunk(image, chunk),
            "sam_image_encoder": lambda: reference.model.get_image_embeddings(pixels)}
    b.report.details["profile"] = {}
    for name, job in jobs.items():
        # FLOPs are counted in the floor section: under FlopCounterMode the profiler records every op twice.
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
    times = interleaved({name: Case(lambda _, d=d: d.detect(image, b.labels, 0.0),
                                    (lambda _, d=d: d.cache.clear()) if hasattr(d, "cache") else None)
                         for name, d in loaded.items()}, b.repeats)
    warm = interleaved({"SAM 3 warm": Case(lambda _: sam3.detect(image, b.labels[:1], 0.0))}, b.repeats)
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
    "mainjob": mainjob, "throughput": throughput, "click": click, "decoder": decoder, "memory": memory,
    "runtimes": runtimes, "half": half, "segmenters": segmenters, "profile": profile, "floor": floor,
    "detectors": detectors, "video": video, "detector_runtimes": detector_runtimes, "large_image": large_image,
}
