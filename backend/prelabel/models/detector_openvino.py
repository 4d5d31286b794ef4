"""Grounding DINO (and MM Grounding DINO / LLMDet) run by OpenVINO on the CPU: one converted model per input shape.

Why per shape: OpenVINO converts the model by tracing it, and the traced graph keeps the feature-map sizes of
its example image as constants. It declares dynamic inputs but runs only at the shape it was traced at (another
shape fails in a Swin ``Concat``; ``reshape`` fails the same way). ``torch.export`` with a symbolic height and
width was tried first: with ``H = 4·k`` it does not convert (``mod`` and ``sym_float`` have no OpenVINO rule);
with ``H = 224·k`` it converts, but the reshape targets are again the example's constants (matched IoU 0.95 at
the example shape, 0.07 at its transpose). The text is made shape-free instead: it is padded to a bucket
(32, 64, … up to ``max_text_len``), which PyTorch computes exactly (padded vs unpadded: identical boxes).

So the policy never stalls labeling: a shape runs in PyTorch until its converted model exists. A shape's model
is converted once it has been seen ``convert_after`` times (a conversion of DINO-T costs ~200 s of CPU, and
saves ~8 s per image after it), in a background thread that runs the conversion in a **child process** under a
memory limit (~6 GiB at 800×1202): a failed or oversized conversion logs one line and that shape stays in
PyTorch. Converted models are cached on disk (``runtime_cache``), keyed by the weights' digest, the shape, the
precision and the library versions, bounded to :data:`MAX_CACHED_SHAPES` entries; at most
:data:`MAX_COMPILED` are compiled in memory at once. A shape whose converted model is on disk is compiled at its
first sighting in the calling thread (a few seconds, less than one PyTorch forward).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import queue
import shutil
import sys
import threading
import time
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_model
from torch import nn
from transformers import AutoModelForZeroShotObjectDetection

from prelabel.models.runtimes import (
    DEFAULT_RUNTIME_CACHE,
    RuntimeUnavailable,
    cached_conversion,
    conversion_key,
    convert_in_child,
    exclusive,
    openvino_config,
    openvino_for,
    report_peak,
    weights_digest,
)

log = logging.getLogger(__name__)

DETECTOR_RUNTIMES = ("torch", "openvino")
RUNTIME = "openvino-detector"  # the cache folder, and the runtime part of the cache key
FILENAME = "detector.xml"
GRAPH_VERSION = 2  # bump when the traced graph changes for the same weights (2: deformable attention by level)
MAX_CACHED_SHAPES = 6  # converted models kept on disk (DINO-T: ~650 MB each)
MAX_COMPILED = 4  # compiled models kept in memory (DINO-T: ~0.7-1 GiB each)
DEFAULT_CONVERT_AFTER = 10
DEFAULT_CONVERT_MEMORY_GB = 10.0
Shape = tuple[int, int, int]  # pixel height, pixel width, padded text length


def text_bucket(length: int, max_length: int) -> int:
    """The padded text length for ``length`` tokens: the next power of two from 32, at most ``max_length``."""
    bucket = 32
    while bucket < length:
        bucket *= 2
    return min(bucket, max_length)


class TracedDetector(nn.Module):
    """The detector's forward with the text masks as inputs and ``(logits, pred_boxes)`` as outputs.

    transformers derives the text self-attention mask and position ids from ``input_ids`` with Python loops
    that tracing cannot follow; they are computed beforehand (:func:`graph_inputs`) and handed in.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._modeling = sys.modules[type(model).__module__]

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor, input_ids: torch.Tensor,
                token_type_ids: torch.Tensor, attention_mask: torch.Tensor, text_mask: torch.Tensor,
                position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _patched(self._modeling, "generate_masks_with_special_tokens_and_transfer_map",
                      lambda *args, **kwargs: (text_mask, position_ids)):
            out = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask, input_ids=input_ids,
                             token_type_ids=token_type_ids, attention_mask=attention_mask)
        return out.logits, out.pred_boxes


@contextmanager
def _patched(owner: object, name: str, value: object) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _logit(x: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """``torch.special.logit`` in ops OpenVINO converts (it has no rule for ``aten::special_logit``)."""
    x = x.clamp(eps, 1 - eps) if eps is not None else x
    return torch.log(x / (1 - x))


def deformable_attention_by_level(self: nn.Module, value: torch.Tensor, value_spatial_shapes: torch.Tensor,
                                   value_spatial_shapes_list: list[tuple[int, int]], level_start_index: torch.Tensor,
                                   sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                                   im2col_step: int) -> torch.Tensor:
    """transformers' ``MultiScaleDeformableAttention.forward``, weighting each level's samples as they come.

    transformers stacks every level's samples into one ``(B·heads, C, queries, levels, points)`` tensor before
    weighting them: 330 MB at 800×1202, which OpenVINO writes with a reference ``Concat`` (1 s of 3.3 s per
    image on 2 cores). Summing level by level is the same arithmetic without that tensor.
    """
    batch_size, _, num_heads, hidden_dim = value.shape
    _, num_queries, num_heads, num_levels, num_points, _ = sampling_locations.shape
    value_list = value.split([height * width for height, width in value_spatial_shapes_list], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    weights = attention_weights.transpose(1, 2).reshape(batch_size * num_heads, 1, num_queries, num_levels, num_points)
    output = None
    for level, (height, width) in enumerate(value_spatial_shapes_list):
        level_value = value_list[level].flatten(2).transpose(1, 2).reshape(batch_size * num_heads, hidden_dim,
                                                                            height, width)
        grid = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled = nn.functional.grid_sample(level_value, grid, mode="bilinear", padding_mode="zeros",
                                            align_corners=False)  # (B·heads, C, queries, points)
        term = (sampled * weights[..., level, :]).sum(-1)
        output = term if output is None else output + term
    return output.view(batch_size, num_heads * hidden_dim, num_queries).transpose(1, 2).contiguous()


def graph_inputs(model: nn.Module, inputs: dict[str, torch.Tensor], text_length: int,
                 pad_token_id: int) -> list[np.ndarray]:
    """The :class:`TracedDetector` inputs for the processor's ``inputs``, the text padded to ``text_length``."""
    ids = inputs["input_ids"]
    pad = text_length - ids.shape[1]
    token_types = inputs.get("token_type_ids", torch.zeros_like(ids))
    attention = inputs.get("attention_mask", torch.ones_like(ids))
    if pad > 0:
        ids = nn.functional.pad(ids, (0, pad), value=pad_token_id)
        token_types = nn.functional.pad(token_types, (0, pad))
        attention = nn.functional.pad(attention, (0, pad))
    masks = sys.modules[type(model).__module__].generate_masks_with_special_tokens_and_transfer_map
    text_mask, position_ids = masks(ids, special_tokens=model.model.special_tokens.cpu())
    tensors = (inputs["pixel_values"].float(), inputs["pixel_mask"], ids, token_types, attention, text_mask,
               position_ids)
    return [t.detach().cpu().numpy() for t in tensors]


def input_shapes(shape: Shape) -> list[list[int]]:
    """The :class:`TracedDetector` input shapes at ``shape``, in its ``forward``'s order."""
    height, width, text = shape
    return [[1, 3, height, width], [1, height, width], [1, text], [1, text], [1, text], [1, text, text], [1, text]]


def shape_of(inputs: dict[str, torch.Tensor], max_text_length: int) -> Shape:
    height, width = inputs["pixel_values"].shape[-2:]
    return int(height), int(width), text_bucket(int(inputs["input_ids"].shape[1]), max_text_length)


def shapes_for(model: nn.Module, processor: object, texts: Sequence[str], sizes: Iterable[tuple[int, int]]) -> list[Shape]:
    """The converted-model shapes that images of ``sizes`` (height, width) with the prompt ``texts`` run at:
    the processor's resize of each size, and each text's padded length (what ``prelabel warmup`` converts)."""
    max_length = int(model.config.max_text_len)
    shapes: list[Shape] = []
    for height, width in sizes:
        pixels = processor.image_processor(images=np.zeros((height, width, 3), np.uint8), return_tensors="pt")
        for text in texts:
            ids = processor.tokenizer(text, return_tensors="pt")["input_ids"]
            shape = shape_of({"pixel_values": pixels["pixel_values"], "input_ids": ids}, max_length)
            if shape not in shapes:
                shapes.append(shape)
    return shapes


def convert(weights: Path, out: Path, shape: Shape) -> None:
    """Convert the model saved in ``weights`` (``save_pretrained``) at ``shape`` into the OpenVINO IR ``out``."""
    model = AutoModelForZeroShotObjectDetection.from_pretrained(weights).float().eval()
    height, width, text_length = shape
    ids = torch.zeros(1, 2, dtype=torch.long)  # [CLS] [SEP] of any tokenizer; values do not shape the trace
    example = {"pixel_values": torch.zeros(1, 3, height, width), "pixel_mask": torch.ones(1, height, width,
               dtype=torch.long), "input_ids": ids, "token_type_ids": torch.zeros_like(ids),
               "attention_mask": torch.ones_like(ids)}
    arrays = graph_inputs(model, example, text_length, 0)
    attention = {type(m) for m in model.modules() if type(m).__name__ == "MultiScaleDeformableAttention"}
    with ExitStack() as patches:
        patches.enter_context(_patched(torch.special, "logit", _logit))
        for cls in attention:
            patches.enter_context(_patched(cls, "forward", deformable_attention_by_level))
        _trace(model, arrays, out)


def _trace(model: nn.Module, arrays: list[np.ndarray], out: Path) -> None:
    import openvino as ov  # optional: the [openvino] extra (the runtime was checked before a conversion starts)

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
        converted = ov.convert_model(TracedDetector(model).eval(),
                                     example_input=tuple(torch.from_numpy(a) for a in arrays))
    ov.save_model(converted, str(out), compress_to_fp16=False)


class OpenVinoDetectorRuntime:
    """Runs a Grounding DINO model's forward through OpenVINO where a converted model for the input shape
    exists, and returns None where it does not yet (the caller runs PyTorch); see the module docstring.

    ``precision`` is OpenVINO's inference precision hint (``fp32`` or ``bf16``); the IR is the same f32 graph.
    """

    def __init__(self, model: nn.Module, pad_token_id: int, cache_dir: str | Path = DEFAULT_RUNTIME_CACHE,
                 precision: str = "fp32", convert_after: int = DEFAULT_CONVERT_AFTER,
                 convert_memory_gb: float = DEFAULT_CONVERT_MEMORY_GB) -> None:
        ov = openvino_for("detector-runtime", precision)
        self.model = model
        self.pad_token_id = pad_token_id
        self.cache_dir = Path(cache_dir).expanduser()
        self.precision = precision
        self.convert_after = max(1, convert_after)
        self.convert_memory_bytes = int(convert_memory_gb * 1024**3)
        self.max_text_length = int(model.config.max_text_len)
        self._core = ov.Core()
        self._digest: str | None = None
        self._seen: Counter[Shape] = Counter()
        self._failed: set[Shape] = set()  # conversions that failed: not retried in this process
        self._pending: set[Shape] = set()
        self._compiled: OrderedDict[Shape, object] = OrderedDict()
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[Shape, bool] | None] = queue.Queue()  # None: stop
        self._closing = threading.Event()
        self._worker: threading.Thread | None = None
        self.conversions: list[dict[str, float | int | str]] = []  # what each conversion cost (the bench reads it)
        self.runs = 0  # forwards OpenVINO ran

    @property
    def digest(self) -> str:
        """The weights' digest (computed once: hashing DINO-T's 690 MB takes ~1 s)."""
        if self._digest is None:
            self._digest = weights_digest(self.model)
        return self._digest

    def key(self, shape: Shape) -> str:
        return conversion_key(self.digest, type(self.model).__name__, RUNTIME, f"ir-f32-v{GRAPH_VERSION}", list(shape),
                              ("openvino",))

    def cached(self, shape: Shape) -> Path | None:
        """The converted model for ``shape`` on disk, if there is one."""
        path = self.cache_dir / RUNTIME / self.key(shape) / FILENAME
        return path if path.is_file() else None

    def __call__(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(logits, pred_boxes)`` from OpenVINO, or None when ``inputs``' shape has no compiled model yet (it is
        then counted, and converted in the background when due). A shape converted on disk but not compiled in
        this process is compiled here first."""
        shape = shape_of(inputs, self.max_text_length)
        compile_here = False
        with self._lock:
            compiled = self._compiled.get(shape)
            if compiled is not None:
                self._compiled.move_to_end(shape)
            else:
                self._seen[shape] += 1
                seen = self._seen[shape]
                due = shape not in self._failed and shape not in self._pending
                if due and self.cached(shape) is not None:
                    # Converted before (warmup, another run): compiling it here takes seconds, less than one
                    # PyTorch forward, so this image waits for it.
                    self._pending.add(shape)
                    compile_here = True
                elif due and seen >= self.convert_after:
                    self._pending.add(shape)
                    self._schedule(shape, convert=True)
        if compile_here:
            self._build(shape, convert=False)
            with self._lock:
                compiled = self._compiled.get(shape)
        if compiled is None:
            return None
        arrays = graph_inputs(self.model, inputs, shape[2], self.pad_token_id)
        request = compiled.create_infer_request()
        results = request.infer(arrays)
        logits, boxes = (torch.from_numpy(results[out].copy()) for out in compiled.outputs)
        self.runs += 1
        return logits, boxes

    def prepare(self, shape: Shape) -> bool:
        """Convert (if needed) and compile the model for ``shape`` now, in this thread; False if that failed."""
        with self._lock:
            if shape in self._compiled:
                return True
            self._pending.add(shape)
        self._build(shape, convert=True)
        return shape in self._compiled

    def wait(self) -> None:
        """Block until every scheduled conversion and compilation has finished."""
        self._jobs.join()

    def _schedule(self, shape: Shape, convert: bool) -> None:
        self._jobs.put((shape, convert))
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="openvino-detector", daemon=True)
            self._worker.start()
            atexit.register(self.close)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the background worker: a conversion in progress is killed, a running step is waited for.

        Registered at exit: a daemon thread still inside torch or OpenVINO when the interpreter finalises
        aborts the whole process (``terminate called without an active exception``, exit 134)."""
        self._closing.set()
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(timeout_s)

    def _work(self) -> None:
        while not self._closing.is_set():
            job = self._jobs.get()
            if job is None:
                self._jobs.task_done()
                break
            shape, convert = job
            try:
                self._build(shape, convert)
            except Exception:  # a bug here must not end the worker; the shape stays in PyTorch
                log.exception("OpenVINO detector: preparing %s failed", shape)
            finally:
                self._jobs.task_done()

    def _build(self, shape: Shape, convert: bool) -> None:
        """Compile the model for ``shape``, converting it first if it is not on disk and ``convert`` is set."""
        try:
            path = self.cached(shape)
            if path is None and not convert:
                with self._lock:
                    self._pending.discard(shape)
                return
            path = path or self._convert(shape)
            started = time.perf_counter()
            model = self._core.read_model(str(path))
            # Static input shapes: the graph runs only at its shape anyway, and static kernels are ~15% faster.
            model.reshape({port.get_any_name(): dims for port, dims in zip(model.inputs, input_shapes(shape))})
            compiled = self._core.compile_model(model, "CPU", openvino_config(self.precision, path.parent))
            os.utime(path.parent)  # most recently used: the last to be evicted from the disk cache
            log.info("OpenVINO detector: compiled %d×%d (text %d) in %.1f s", *shape, time.perf_counter() - started)
        except (RuntimeUnavailable, RuntimeError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            with self._lock:
                self._failed.add(shape)
                self._pending.discard(shape)
            (log.debug if self._closing.is_set() else log.warning)("OpenVINO detector: no converted model for %d×%d (text %d), it keeps running in PyTorch: %s",
                        *shape, reason)
            return
        with self._lock:
            self._compiled[shape] = compiled
            self._pending.discard(shape)
            while len(self._compiled) > MAX_COMPILED:
                self._compiled.popitem(last=False)

    def _convert(self, shape: Shape) -> Path:
        report: dict[str, float | int | str] = {}

        def run(out: Path) -> None:
            weights = out.parent / "weights"
            weights.mkdir()
            self.model.config.save_pretrained(weights)
            save_model(self.model, str(weights / "model.safetensors"), metadata={"format": "pt"})
            try:
                seconds, peak = convert_in_child(__name__, [str(weights), str(out), *map(str, shape)],
                                                 self.convert_memory_bytes, "PRELABEL_DETECTOR_CONVERT_MEMORY_GB",
                                                 stop=self._closing)
            finally:
                shutil.rmtree(weights, ignore_errors=True)
            report.update(shape="×".join(map(str, shape)), seconds=seconds, peak_bytes=peak)

        key = self.key(shape)
        with exclusive(self.cache_dir / RUNTIME / f".{key}.lock"):  # server workers convert a shape once, not each
            path, _ = cached_conversion(self.cache_dir, RUNTIME, key, FILENAME, run)
        if report:  # else another process converted it while this one waited for the lock
            self.conversions.append(report)
            log.info("OpenVINO detector: converted %s in %.0f s (peak %.1f GiB)", report["shape"],
                     report["seconds"], int(report["peak_bytes"]) / 1024**3)
            _evict(self.cache_dir / RUNTIME, MAX_CACHED_SHAPES)
        return path


def _evict(root: Path, keep: int) -> None:
    """Remove the least recently used converted models beyond ``keep``."""
    entries = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for entry in entries[keep:]:
        shutil.rmtree(entry, ignore_errors=True)
        (root / f".{entry.name}.lock").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    """The conversion child: ``python -m prelabel.models.detector_openvino WEIGHTS OUT HEIGHT WIDTH TEXT``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("weights", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("shape", type=int, nargs=3)
    args = parser.parse_args(argv)
    convert(args.weights, args.out, tuple(args.shape))
    report_peak()


if __name__ == "__main__":
    main()
