"""Other runtimes of a segmenter's image encoder: dynamic int8, ONNX Runtime and OpenVINO.

The image encoder is where a segmenter spends its time (the decoder is ~1% of it), so only the encoder is
swapped; prompts and masks go through the same PyTorch decoder. Each runtime must agree with fp32 PyTorch
on the same weights before it is trusted (``prelabel bench --sections runtimes`` measures it).

Converted encoders (ONNX files, OpenVINO IR) are cached on disk under the ``runtime_cache`` setting, keyed
by a hash of the model's weights, the runtime, its precision, the input size and the library versions, so
the minute a conversion costs is paid once per machine, not at every start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from prelabel.core.errors import PrelabelError

log = logging.getLogger(__name__)

SAM_RUNTIMES = ("torch", "int8", "onnx", "openvino")
DEFAULT_RUNTIME_CACHE = "~/.cache/prelabel"
_FORMAT = 1  # bump when the exported graph changes for the same weights


class RuntimeUnavailable(PrelabelError):
    """A runtime that cannot be used here; the message names the package to install or the option to change."""


def quantize_encoder_int8(model: nn.Module) -> None:
    """Replace the Linear layers of ``model.vision_encoder`` by dynamically quantised int8 ones (CPU only)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao (see docs)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        model.vision_encoder = quantize_dynamic(model.vision_encoder, {nn.Linear}, dtype=torch.qint8)


class _EncoderForExport(nn.Module):
    """``get_image_embeddings`` as a module's forward, returning a tuple of tensors (SAM: one, SAM 2: three)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embeddings = self.model.get_image_embeddings(pixel_values)
        return tuple(embeddings) if isinstance(embeddings, (list, tuple)) else (embeddings,)


def weights_digest(model: nn.Module) -> str:
    """A hash of every parameter and buffer (names, shapes, dtypes and bytes): the weights' identity."""
    digest = hashlib.blake2b(digest_size=20)
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def cache_key(model: nn.Module, runtime: str, precision: str, image_size: int, packages: tuple[str, ...]) -> str:
    """The folder name of one converted encoder: weights, runtime, precision, input size, library versions."""
    return conversion_key(weights_digest(model), type(model).__name__, runtime, precision, image_size, packages)


def conversion_key(digest: str, model_class: str, runtime: str, precision: str, shape: object,
                   packages: tuple[str, ...]) -> str:
    """The folder name of one converted model: its weights' digest and class, the runtime, the precision, the
    input shape it is tied to, and the versions of torch, transformers and ``packages``."""
    key = {"weights": digest, "runtime": runtime, "precision": precision, "size": shape,
           "class": model_class, "format": _FORMAT,
           "versions": {p: _version(p) for p in ("torch", "transformers", *packages)}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def cached_conversion(cache_dir: str | Path, runtime: str, key: str, filename: str,
                      convert: Callable[[Path], None]) -> tuple[Path, float]:
    """The path of ``filename`` in the cache entry ``key``, converting into it first when it is missing.

    Returns the path and the seconds spent converting (0.0 when the cache had it). The entry is written to
    a temporary folder beside it and renamed into place, so a crash or a concurrent start never leaves a
    half-written model behind.
    """
    root = Path(cache_dir).expanduser() / runtime
    entry = root / key
    if (entry / filename).is_file():
        return entry / filename, 0.0
    try:
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    except OSError as exc:
        raise RuntimeUnavailable(f"cannot write converted models to {root}: {exc}; set PRELABEL_RUNTIME_CACHE "
                            f"(--runtime-cache) to a writable folder") from exc
    started = time.perf_counter()
    try:
        convert(scratch / filename)
        seconds = time.perf_counter() - started
        try:
            os.replace(scratch, entry)
        except OSError:  # another process finished the same conversion first: use its copy
            shutil.rmtree(scratch, ignore_errors=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    log.info("converted a model for %s in %.1f s (cached in %s)", runtime, seconds, entry)
    return entry / filename, seconds


class OnnxImageEncoder:
    """A segmenter's image encoder exported with ``torch.onnx`` and run by ONNX Runtime (CPU, fp32).

    The export is cached on disk (see the module docstring); ``convert_seconds`` is 0.0 when the cache had
    it. ONNX Runtime gets as many intra-op threads as torch has.

    ONNX Runtime's CPU memory arena is off: with it, every later encoder run in the process, PyTorch's
    (Grounding DINO, other encoders) and its own, got slower run after run (SAM ViT-B 14 s to 21-23 s after
    two ONNX runs on the 2-core bench machine); without it both stay at their own speed.
    """

    runtime = "onnx"

    def __init__(self, model: nn.Module, image_size: int, cache_dir: str | Path = DEFAULT_RUNTIME_CACHE) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable('--sam-runtime onnx needs onnx and onnxruntime: pip install "prelabel[bench]"') from exc

        def export(path: Path) -> None:
            example = torch.zeros(1, 3, image_size, image_size)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
                torch.onnx.export(_EncoderForExport(model).eval(), (example,), str(path),
                                  input_names=["pixel_values"], dynamo=False, opset_version=17)

        key = cache_key(model, "onnx", "fp32", image_size, ("onnx", "onnxruntime"))
        path, self.convert_seconds = cached_conversion(cache_dir, "onnx", key, "image_encoder.onnx", export)
        self.path = path
        started = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3  # errors only: shape-merge notices are noise
        options.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.load_seconds = time.perf_counter() - started

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, {"pixel_values": pixel_values.detach().float().cpu().numpy()})
        tensors = tuple(torch.from_numpy(out) for out in outputs)
        return tensors[0] if len(tensors) == 1 else tensors


OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def openvino_for(option: str, precision: str) -> ModuleType:
    """The ``openvino`` module, checked for what ``--<option> openvino`` needs: installed, and ``precision``
    (``fp32`` or ``bf16``) one it runs."""
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeUnavailable(f'--{option} openvino needs OpenVINO: pip install "prelabel[openvino]" '
                                 f'(or pass --{option} torch)') from exc
    if precision not in OPENVINO_PRECISIONS:
        raise RuntimeUnavailable(f"OpenVINO runs in {' or '.join(OPENVINO_PRECISIONS)}, not {precision}: "
                                 f"pass --dtype fp32 or bf16")
    return openvino


def openvino_config(precision: str) -> dict[str, str | int]:
    """OpenVINO's CPU compile options: the precision hint, and as many threads as torch uses."""
    return {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision], "INFERENCE_NUM_THREADS": torch.get_num_threads()}


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported here."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoImageEncoder:
    """A segmenter's image encoder converted with ``openvino.convert_model`` and run by OpenVINO's CPU plugin.

    ``precision`` (``fp32`` or ``bf16``) is OpenVINO's ``INFERENCE_PRECISION_HINT``; the IR on disk is the
    same f32 graph for both. The converted model is cached on disk (``convert_seconds`` is 0.0 when the
    cache had it); ``compile_seconds`` is what every start pays.
    """

    runtime = "openvino"

    def __init__(self, model: nn.Module, image_size: int, cache_dir: str | Path = DEFAULT_RUNTIME_CACHE,
                 precision: str = "fp32") -> None:
        ov = openvino_for("sam-runtime", precision)

        def convert(path: Path) -> None:
            example = torch.zeros(1, 3, image_size, image_size)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                converted = ov.convert_model(_EncoderForExport(model).eval(), example_input=(example,))
            ov.save_model(converted, str(path), compress_to_fp16=False)

        key = cache_key(model, "openvino", "ir-f32", image_size, ("openvino",))
        path, self.convert_seconds = cached_conversion(cache_dir, "openvino", key, "image_encoder.xml", convert)
        self.path = path
        self.precision = precision
        started = time.perf_counter()
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", openvino_config(precision))
        self.request = self.compiled.create_infer_request()
        self.compile_seconds = time.perf_counter() - started

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        results = self.request.infer([pixel_values.detach().float().cpu().numpy()])
        tensors = tuple(torch.from_numpy(results[out].copy()) for out in self.compiled.outputs)
        return tensors[0] if len(tensors) == 1 else tensors
