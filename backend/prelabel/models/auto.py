"""``--dtype auto`` / ``--sam-runtime auto``: the fastest path that met the accuracy bar on the device found.

The table is explicit, and each "yes" in it is a measurement of ``prelabel bench`` (docs/performance.md:
box IoU and mask IoU vs fp32 >= 0.98 on the same weights). A path whose accuracy was not measured, or missed
the bar, is never chosen by ``auto``; it stays an opt-in (``--dtype bf16``, ``--sam-runtime int8``).

| device | dtype | SAM image encoder | why |
|---|---|---|---|
| CPU with native bf16 (AVX512-BF16, AMX), ``openvino``, SAM (v1) | fp32 | openvino, **bf16** precision (+ the box decoder's upscaling) | encoder 4.9-6.3x PyTorch fp32 (f32: 2.3-3.3x), decoder 1.3x at 100 boxes; every mask of 50 agrees (judged IoU 1.000, plain >= 0.988) |
| CPU, ``openvino`` installed, a SAM (v1) segmenter | fp32 | openvino (f32) | 2.3-3.3x PyTorch fp32, masks agree |
| CPU, ``onnxruntime`` installed (no openvino), SAM | fp32 | onnx | 1.1x, masks identical |
| CPU, otherwise (SAM 2.1, SAM 3 tracker, no runtime) | fp32 | torch | |
| CUDA / MPS | fp32 | torch | fp16/bf16 not yet measured on a GPU (benchmarks/gpu_bench.sh) |
| ``random-tiny`` segmenter (tests) | fp32 | torch | a 0.1 M-parameter encoder gains nothing from conversion |

``--detector-runtime auto``: OpenVINO f32 for Grounding DINO / MM Grounding DINO on a CPU where it is installed
(each image shape converted once it recurs, PyTorch until then: :mod:`prelabel.models.detector_openvino`;
3.4-3.7x PyTorch fp32 per image at 800x1202, 2.6-2.9x at 800x800, all 900 query boxes matched at mean IoU
0.998 / 0.990), else PyTorch. Its bf16 hint (4.3-5.5x) misses the box bar at 800x800 (0.984): opt-in.

``--sam-precision auto`` (SAM's precision with the OpenVINO encoder: the encoder's, and the box decoder's upscaling;
separate from ``--dtype``): bf16 on a CPU with native bf16 dot products, where ``prelabel bench --sections
runtimes,decoder`` measured it within the bar on random-full (2026-12-07, 2-core AMD EPYC with avx512_bf16: every
one of 50 box masks of the bf16 encoder + bf16 upscaling agrees with fp32 PyTorch over the pixels whose fp32
|logit| is above that mask's median, the cut of ``shared/perf-recipes.md`` §3; plain mask IoU >= 0.988 on 10
boxes; the upscaling alone: every one of 100 masks); fp32 elsewhere (emulated bf16 is slower). PyTorch bf16 (``--dtype bf16``) is not chosen: SAM's
PyTorch bf16 masks and Grounding DINO's boxes miss the bar (docs/performance.md). Real weights are the final check
(``prelabel bench --sections runtimes --segmenter /path/to/sam-vit-base``).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from prelabel.models.specs import model_type_of

log = logging.getLogger(__name__)

AUTO = "auto"
# The OpenVINO SAM encoder in bf16 on a CPU with native bf16: chosen by ``auto`` only once measured to meet the bar
# (``prelabel bench --sections runtimes``: every mask's judged IoU vs fp32 >= 0.98 on random-full; docs/performance.md).
OPENVINO_BF16_MET_THE_BAR = True
OPENVINO_BF16_EVIDENCE = ("bf16 on native bf16: OpenVINO encoder 4.9-6.3x PyTorch fp32 (f32: 2.3-3.3x), decoder "
                          "upscaling 1.3x at 100 boxes; judged mask IoU 1.000 over 50 masks, plain 0.988")
_GDINO_RANDOM = ("random-full", "random-full-mm-grounding-dino")  # random-tiny gains nothing from conversion
_SAM_V1_RANDOM = ("random-full", "random-full-vit-h", "random-full-slimsam-50", "random-full-slimsam-77")


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` resolved to, and why (logged at start)."""

    dtype: str
    sam_runtime: str
    reason: str
    detector_runtime: str = "torch"
    sam_precision: str = "fp32"  # the OpenVINO SAM encoder's inference precision

    @property
    def pair(self) -> tuple[str, str]:
        return self.dtype, self.sam_runtime


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def is_sam_v1(segmenter: str) -> bool:
    """Whether a segmenter spec names an original SAM (ViT-B/L/H, SlimSAM): the encoders the runtimes convert."""
    if segmenter in _SAM_V1_RANDOM:
        return True
    if segmenter.endswith(".pth"):
        return Path(segmenter).name.startswith("sam_vit")
    kind = model_type_of(segmenter)
    if kind is None:  # a hub id not downloaded yet: its name tells (facebook/sam-vit-base, nielsr/slimsam-50-uniform)
        return segmenter.rsplit("/", 1)[-1].lower().startswith(("sam-vit", "slimsam"))
    return kind == "sam"


def is_grounding_dino(detector: str) -> bool:
    """Whether a detector spec names Grounding DINO or MM Grounding DINO / LLMDet: what the detector runtimes run."""
    if detector.startswith("random-"):
        return detector in _GDINO_RANDOM
    kind = model_type_of(detector)
    if kind is None:  # a hub id not downloaded yet: its name tells (IDEA-Research/grounding-dino-tiny, iSEE-Laboratory/llmdet_tiny)
        name = detector.rsplit("/", 1)[-1].lower().replace("_", "-")
        return "grounding-dino" in name or name.startswith("llmdet")
    return kind in ("grounding-dino", "mm-grounding-dino")


def choose(device: str, segmenter: str, dtype: str = AUTO, sam_runtime: str = AUTO,
           openvino: bool | None = None, onnxruntime: bool | None = None, detector: str = "",
           detector_runtime: str = "torch", sam_precision: str = "fp32", native_bf16: bool = False) -> AutoChoice:
    """Resolve ``auto`` values for a concrete ``device`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``); ``native_bf16``:
    the CPU computes bf16 natively (:func:`prelabel.models.devices.native_bf16_cpu`)."""
    notes = []
    openvino = _installed("openvino") if openvino is None else openvino
    if dtype == AUTO:
        dtype = "fp32"
        notes.append("dtype fp32 (no reduced precision has met the accuracy bar yet)")
    if sam_runtime == AUTO:
        onnxruntime = _installed("onnxruntime") if onnxruntime is None else onnxruntime
        if device != "cpu" or not segmenter:
            sam_runtime, why = "torch", f"on {device} the encoder runs in PyTorch"
        elif segmenter.startswith("random-tiny"):
            sam_runtime, why = "torch", "a tiny test encoder gains nothing from conversion"
        elif not is_sam_v1(segmenter):
            sam_runtime, why = "torch", "the runtimes are measured for SAM (v1) encoders only"
        elif openvino and dtype in ("fp32", "bf16"):
            sam_runtime, why = "openvino", "OpenVINO is installed: the fastest measured CPU encoder"
        elif onnxruntime and dtype == "fp32":
            sam_runtime, why = "onnx", "ONNX Runtime is installed (OpenVINO is not: pip install \"prelabel[openvino]\")"
        else:
            sam_runtime, why = "torch", "neither OpenVINO nor ONNX Runtime is installed"
        notes.append(f"SAM encoder {sam_runtime} ({why})")
    if detector_runtime == AUTO:
        if device != "cpu" or not detector:
            detector_runtime, why = "torch", f"on {device} the detector runs in PyTorch"
        elif not is_grounding_dino(detector):
            detector_runtime, why = "torch", "the OpenVINO detector is measured for Grounding DINO only"
        elif not openvino:
            detector_runtime, why = "torch", 'OpenVINO is not installed: pip install "prelabel[openvino]"'
        elif dtype != "fp32":
            detector_runtime, why = "torch", f"OpenVINO's detector is measured in fp32, not {dtype}"
        else:
            detector_runtime, why = "openvino", ("OpenVINO f32: 2.6-3.7x PyTorch per image once its shape is converted, "
                                                 "boxes agree")
        notes.append(f"detector {detector_runtime} ({why})")
    if sam_precision == AUTO:
        if sam_runtime != "openvino":
            sam_precision = "fp32"  # the precision of the OpenVINO encoder: nothing to choose
        elif dtype == "bf16":
            sam_precision, why = "bf16", "--dtype bf16"
        elif native_bf16 and OPENVINO_BF16_MET_THE_BAR:
            sam_precision, why = "bf16", OPENVINO_BF16_EVIDENCE
        else:
            sam_precision, why = "fp32", ("OpenVINO bf16 has not met the accuracy bar" if native_bf16 else
                                          "this CPU has no native bf16 (AVX512-BF16 or AMX)")
        if sam_runtime == "openvino":
            notes.append(f"SAM encoder precision {sam_precision} ({why})")
    return AutoChoice(dtype, sam_runtime, "; ".join(notes), detector_runtime, sam_precision)
