"""Resolve model specs (hub ids, local folders, official checkpoints, ``random-*``) into loaded models."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessorPil,
    GroundingDinoProcessor,
    Sam2Model,
    Sam2VideoModel,
    SamHQModel,
    SamImageProcessorPil,
    SamModel,
    SamProcessor,
)

from prelabel.core.errors import ModelLoadError
from prelabel.models.detector_openvino import (
    DEFAULT_CONVERT_AFTER,
    DEFAULT_CONVERT_MEMORY_GB,
    DETECTOR_RUNTIMES,
    OpenVinoDetectorRuntime,
)
from prelabel.models.devices import pick_device
from prelabel.models.families import is_sam3_tracker_spec, load_family_detector, load_sam3_tracker_segmenter
from prelabel.models.grounding_dino import GroundingDinoDetector
from prelabel.models.protocols import Detector
from prelabel.models.random_weights import (
    SAM2_SPECS,
    build_grounding_dino,
    build_sam,
    build_sam2,
    build_sam2_video,
    random_sam_processor,
)
from prelabel.models.runtimes import (
    DEFAULT_RUNTIME_CACHE,
    OPENVINO_PRECISIONS,
    SAM_CONVERT_MEMORY_GB,
    SAM_RUNTIMES,
    OnnxImageEncoder,
    OpenVinoImageEncoder,
    quantize_encoder_int8,
)
from prelabel.models.sam import SamSegmenter
from prelabel.models.sam2 import Sam2Segmenter
from prelabel.models.sam2_video import Sam2VideoTracker
from prelabel.models.sam_checkpoint import CheckpointError, load_official_sam
from prelabel.models.sam_hq import SAM_HQ_SPECS, SamHQSegmenter, build_sam_hq, sam_hq_processor
from prelabel.models.specs import (
    DEFAULT_DETECTOR,
    DEFAULT_SEGMENTER,
    DEFAULT_TRACKER,
    MODEL_TYPES,
    check_spec,
    detector_family,
    is_random,
    random_specs,
    runtime_model_id,
)

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def preload_modules(sam_runtime: str, detector_runtime: str = "torch") -> None:
    """Import now whatever loading a model may import later: the runtimes' packages (every family's module is
    imported with this one). A server calls this before it answers requests, because an import holds the GIL (a C
    extension's for 100-200 ms) and would stall /health and /setup while its models load in a thread."""
    packages = {"onnx": "onnxruntime", "openvino": "openvino"}
    for package in {packages.get(sam_runtime), packages.get(detector_runtime)} - {None}:
        if importlib.util.find_spec(package):
            importlib.import_module(package)


def pick_dtype(name: str) -> torch.dtype:
    """``fp32`` (default), ``fp16`` or ``bf16``."""
    if name not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {name!r}; use one of {', '.join(sorted(_DTYPES))}")
    return _DTYPES[name]


@contextmanager
def _loading(kind: str, spec: str) -> Iterator[None]:
    """Inside: what transformers raises for a folder or hub id it cannot load (``OSError``, ``ValueError``) becomes
    a :class:`ModelLoadError` naming the spec and the fix; the one place the registry catches them."""
    try:
        yield
    except (OSError, ValueError) as exc:  # transformers' ValueError: a folder of another or no model_type
        raise _load_error(kind, spec, exc) from exc


def _load_error(kind: str, spec: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load the {kind} {spec!r}: {exc.__class__.__name__}: {exc}\n"
        f"Pass a local folder written by save_pretrained (or a downloaded hub snapshot), "
        f"e.g. --{kind} /models/{spec.split('/')[-1]}, or set PRELABEL_{kind.upper()}; "
        f"'random-tiny' / 'random-full' run offline with random weights (tests and benchmarks only)."
    )


@lru_cache(maxsize=4)
def load_detector(spec: str = DEFAULT_DETECTOR, device: str = "auto", dtype: str = "fp32", runtime: str = "torch",
                  runtime_cache: str = DEFAULT_RUNTIME_CACHE, convert_after: int = DEFAULT_CONVERT_AFTER,
                  convert_memory_gb: float = DEFAULT_CONVERT_MEMORY_GB) -> Detector:
    """A detector from a hub id, a local folder, or a ``random-*`` spec.

    The family (Grounding DINO, MM Grounding DINO / LLMDet, OWLv2, SAM 3) is the random spec's, else the
    ``model_type`` of the folder's or hub model's ``config.json``. Loaded once per process and spec.
    ``runtime`` ``openvino`` (CPU, Grounding DINO and MM Grounding DINO) runs each image shape through OpenVINO
    once it is converted (:mod:`prelabel.models.detector_openvino`, ``dtype`` fp32 or bf16 is its precision).
    """
    torch.set_flush_denormal(True)
    device, torch_dtype = pick_device(device), pick_dtype(dtype)
    if runtime not in DETECTOR_RUNTIMES:
        raise ModelLoadError(f"unknown detector runtime {runtime!r}; use one of {', '.join(DETECTOR_RUNTIMES)}")
    if runtime == "openvino" and (device != "cpu" or torch_dtype == torch.float16):
        raise ModelLoadError(f"the openvino detector runtime runs fp32 or bf16 on the CPU, not {dtype} on {device}: "
                             f"pass --detector-runtime torch, or --device cpu --dtype fp32")
    detector = _detector(spec, device, torch_dtype)
    if runtime == "openvino":
        if not isinstance(detector, GroundingDinoDetector):
            raise ModelLoadError(f"the openvino detector runtime runs Grounding DINO and MM Grounding DINO, not "
                                 f"{spec!r}: pass --detector-runtime torch")
        detector.accelerator = OpenVinoDetectorRuntime(
            detector.model, detector.processor.tokenizer.pad_token_id, runtime_cache,
            "bf16" if torch_dtype == torch.bfloat16 else "fp32", convert_after, convert_memory_gb)
        detector.model_id = runtime_model_id(spec, runtime)
    return detector


def _detector(spec: str, device: str, torch_dtype: torch.dtype) -> Detector:
    if is_random(spec):
        family = detector_family(spec)
        if family is None:
            raise ModelLoadError(f"{spec!r} is a segmenter; random detectors are {', '.join(random_specs('detector'))}")
        if family != "grounding-dino":
            return load_family_detector(spec, family, True, device, torch_dtype)
        model, processor = build_grounding_dino(spec)
        return GroundingDinoDetector(model, processor, spec, True, device, torch_dtype)
    if spec.endswith(".pth"):
        raise ModelLoadError(
            f"official GroundingDINO checkpoints ({spec}) are not supported yet; use the transformers "
            f"port: --detector IDEA-Research/grounding-dino-tiny or a local folder of it"
        )
    check_spec("detector", spec)
    with _loading("detector", spec):
        kind = AutoConfig.from_pretrained(spec).model_type
        family = MODEL_TYPES.get(kind)
        if family is None:
            raise ModelLoadError(f"the detector {spec!r} is a {kind!r} model; supported model types are "
                                 f"{', '.join(MODEL_TYPES)}")
        if family != "grounding-dino":
            return load_family_detector(spec, family, False, device, torch_dtype)
        model = GroundingDinoForObjectDetection.from_pretrained(spec)
        processor = GroundingDinoProcessor(
            GroundingDinoImageProcessorPil.from_pretrained(spec), AutoTokenizer.from_pretrained(spec)
        )
    return GroundingDinoDetector(model, processor, spec, False, device, torch_dtype)


@lru_cache(maxsize=4)
def load_segmenter(
    spec: str = DEFAULT_SEGMENTER, device: str = "auto", dtype: str = "fp32", cache_mb: int = 512,
    runtime: str = "torch", runtime_cache: str = DEFAULT_RUNTIME_CACHE, convert_memory_gb: float = SAM_CONVERT_MEMORY_GB,
    precision: str = "fp32",
) -> SamSegmenter:
    """A SAM, SAM-HQ or SAM 2.1 segmenter from a hub id, a local folder, an official ``sam_vit_*.pth`` or ``random-*``.

    ``runtime`` runs the image encoder as PyTorch (``torch``), dynamically quantised int8 PyTorch
    (``int8``, CPU), ONNX Runtime (``onnx``, CPU, fp32) or OpenVINO (``openvino``, CPU; ``precision`` fp32 or
    bf16 is its inference precision, and bf16 also runs the box decoder's upscaling in bf16: its attention stays
    fp32); the decoder always runs in PyTorch.
    Converted encoders are cached under ``runtime_cache`` (:mod:`prelabel.models.runtimes`); an OpenVINO encoder
    not converted yet runs in PyTorch until a job's :meth:`~SamSegmenter.expect_images` makes its conversion pay off
    (in a child process past ``convert_memory_gb`` of memory is stopped).
    """
    torch.set_flush_denormal(True)
    device, torch_dtype = pick_device(device), pick_dtype(dtype)
    if runtime not in SAM_RUNTIMES:
        raise ModelLoadError(f"unknown SAM runtime {runtime!r}; use one of {', '.join(SAM_RUNTIMES)}")
    if runtime != "torch" and device != "cpu":
        raise ModelLoadError(f"the {runtime} runtime is for the CPU; on {device} use --sam-runtime torch "
                             f"(and --dtype fp16/bf16)")
    if precision not in OPENVINO_PRECISIONS:
        raise ModelLoadError(f"unknown SAM encoder precision {precision!r}; use auto, "
                             f"{', '.join(OPENVINO_PRECISIONS)} (PRELABEL_SAM_PRECISION)")
    if precision != "fp32" and runtime != "openvino":
        raise ModelLoadError(f"the SAM encoder precision {precision} is OpenVINO's: pass --sam-runtime openvino, or "
                             f"--sam-precision fp32 (--dtype sets PyTorch's)")
    if runtime == "openvino":
        if torch_dtype == torch.float16:
            raise ModelLoadError("the openvino runtime runs fp32 or bf16 on the CPU: pass --dtype fp32 or bf16")
        torch_dtype = torch.float32  # OpenVINO's precision hint lowers the encoder; the small decoder stays fp32
    elif runtime != "torch" and torch_dtype != torch.float32:
        raise ModelLoadError(f"the {runtime} runtime is for fp32 models on the CPU; pass --dtype fp32, or "
                             f"--sam-runtime openvino for bf16")
    if is_sam3_tracker_spec(spec):
        if runtime != "torch":
            raise ModelLoadError(f"SAM 3's tracker runs only with the torch runtime, not {runtime!r}")
        with _loading("segmenter", spec):
            return load_sam3_tracker_segmenter(spec, device, torch_dtype, cache_mb * 1024**2)
    model = _segmenter_model(spec)
    if isinstance(model, SamHQModel):
        if runtime != "torch":
            raise ModelLoadError(f"SAM-HQ runs only with the torch runtime, not {runtime!r}")
        return SamHQSegmenter(model, _sam_processor(spec, model), spec, random_weights=is_random(spec), device=device,
                              dtype=torch_dtype, cache_bytes=cache_mb * 1024**2)
    if runtime == "int8":
        quantize_encoder_int8(model)
    encoder = None
    if runtime == "onnx":
        encoder = OnnxImageEncoder(model, _input_side(model), runtime_cache)
    elif runtime == "openvino":
        encoder = OpenVinoImageEncoder(model, _input_side(model), runtime_cache, precision, convert_memory_gb)
    model_id = runtime_model_id(spec, runtime, precision)
    kwargs = {"random_weights": is_random(spec), "device": device, "dtype": torch_dtype,
              "cache_bytes": cache_mb * 1024**2, "encoder": encoder}
    if isinstance(model, Sam2Model):
        return Sam2Segmenter(model, model_id, **kwargs)
    upscale_dtype = torch.bfloat16 if precision == "bf16" else None
    return SamSegmenter(model, _sam_processor(spec, model), model_id, **kwargs, upscale_dtype=upscale_dtype)


def _input_side(model: SamModel | Sam2Model) -> int:
    """The square input size of a segmenter's image encoder."""
    if isinstance(model, Sam2Model):
        return int(model.config.vision_config.backbone_config.image_size[0])
    return int(model.config.vision_config.image_size)


def _segmenter_model(spec: str) -> SamModel | Sam2Model | SamHQModel:
    """The SAM, SAM 2 or SAM-HQ model a spec names (random, official checkpoint, hub id or folder)."""
    if spec in SAM2_SPECS:
        return build_sam2(spec)
    if spec in SAM_HQ_SPECS:
        return build_sam_hq(spec)[0]
    if is_random(spec):
        return build_sam(spec)[0]
    if spec.endswith(".pth"):
        if not Path(spec).is_file():
            raise ModelLoadError(f"SAM checkpoint {spec} does not exist")
        try:
            return load_official_sam(spec)
        except CheckpointError as exc:
            raise ModelLoadError(str(exc)) from exc
    check_spec("segmenter", spec)
    with _loading("segmenter", spec):
        kind = AutoConfig.from_pretrained(spec).model_type
        return {"sam2": Sam2Model, "sam_hq": SamHQModel}.get(kind, SamModel).from_pretrained(spec)


def _sam_processor(spec: str, model: SamModel) -> SamProcessor:
    """The SAM preprocessor: the random configs', the hub/folder's own, or one sized for an official checkpoint."""
    if spec in SAM_HQ_SPECS:
        return sam_hq_processor(spec)
    if is_random(spec):
        return random_sam_processor(spec)
    if spec.endswith(".pth"):
        side = model.config.vision_config.image_size
        return SamProcessor(SamImageProcessorPil(size={"longest_edge": side}, pad_size={"height": side, "width": side}))
    with _loading("segmenter", spec):
        return SamProcessor(SamImageProcessorPil.from_pretrained(spec))


@lru_cache(maxsize=2)
def load_tracker(spec: str = DEFAULT_TRACKER, device: str = "auto", dtype: str = "fp32") -> Sam2VideoTracker:
    """A SAM 2.1 video tracker from a hub id (``facebook/sam2.1-hiera-*``), a local folder or ``random-*``."""
    torch.set_flush_denormal(True)
    device, torch_dtype = pick_device(device), pick_dtype(dtype)
    if is_random(spec):
        if spec not in random_specs("tracker"):
            raise ModelLoadError(f"{spec!r} is not a tracker; random trackers are {', '.join(random_specs('tracker'))}")
        return Sam2VideoTracker(build_sam2_video(spec), spec, True, device, torch_dtype)
    check_spec("tracker", spec)
    with _loading("tracker", spec):
        model = Sam2VideoModel.from_pretrained(spec)
    return Sam2VideoTracker(model, spec, False, device, torch_dtype)
