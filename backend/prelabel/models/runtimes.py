"""Other runtimes of a segmenter's image encoder: dynamic int8, ONNX Runtime and OpenVINO.

The image encoder is where a segmenter spends its time (the decoder is ~1% of it), so only the encoder is
swapped; prompts and masks go through the same PyTorch decoder. Each runtime must agree with fp32 PyTorch
on the same weights before it is trusted (``prelabel bench --sections runtimes`` measures it).

Converted encoders (ONNX files, OpenVINO IR) are cached on disk under the ``runtime_cache`` setting, keyed
by a hash of the model's weights, the runtime, its precision, the input size and the library versions, so
the minute a conversion costs is paid once per machine, not at every start.
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import hashlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from types import ModuleType

import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic
from transformers import AutoModel

from prelabel.core.errors import PrelabelError
from prelabel.models.devices import cpu_flags

log = logging.getLogger(__name__)

SAM_RUNTIMES = ("torch", "int8", "onnx", "openvino")
DEFAULT_RUNTIME_CACHE = "~/.cache/prelabel"
_FORMAT = 1  # bump when the exported graph changes for the same weights


class RuntimeUnavailable(PrelabelError):
    """A runtime that cannot be used here; the message names the package to install or the option to change."""


def quantize_encoder_int8(model: nn.Module) -> None:
    """Replace the Linear layers of ``model.vision_encoder`` by dynamically quantised int8 ones (CPU only)."""
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


class ConversionFailed(RuntimeUnavailable):
    """A conversion child that failed, ran past its memory limit or its time."""


def convert_in_child(module: str, args: Sequence[str], memory_bytes: int, setting: str, timeout_s: float = 3600.0,
                     stop: threading.Event | None = None) -> tuple[float, int]:
    """Run the conversion ``python -m module *args`` in a child process, killed past ``memory_bytes`` of resident
    memory (``setting`` names the variable that sets it), past ``timeout_s`` or once ``stop`` is set.

    Returns the seconds and the child's peak resident bytes (its last stdout line, :func:`report_peak`, or the
    samples taken here); raises :class:`ConversionFailed` with a one-line reason otherwise.
    """
    cmd = [sys.executable, "-m", module, *args]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        peak, killed = 0, ""
        while proc.poll() is None:
            rss = _resident_bytes(proc.pid)
            peak = max(peak, rss)
            if rss > memory_bytes:
                killed = f"it passed its memory limit of {memory_bytes / 1024**3:.1f} GiB ({setting})"
            elif time.perf_counter() - started > timeout_s:
                killed = f"it ran past {timeout_s:.0f} s"
            elif stop is not None and stop.is_set():
                killed = "the process is exiting"
            if killed:
                proc.kill()
                proc.wait()
                raise ConversionFailed(killed)
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            stderr.seek(0)
            lines = [line.strip() for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]
            raise ConversionFailed(f"the conversion process exited with code {proc.returncode}: "
                                   f"{lines[-1] if lines else 'no message'}")
        stdout.seek(0)
        report = stdout.read().decode(errors="replace").strip().splitlines()
    try:
        peak = max(peak, int(json.loads(report[-1])["peak_bytes"]))
    except (json.JSONDecodeError, KeyError, IndexError):
        pass
    return seconds, peak


def report_peak() -> None:
    """A conversion child's last line: its peak resident bytes, for :func:`convert_in_child`."""
    print(json.dumps({"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def _resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (another process waits for it): server workers convert once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def openvino_config(precision: str, folder: Path | None = None) -> dict[str, str | int]:
    """OpenVINO's CPU compile options: the precision hint, and as many threads as torch uses.

    With the ``folder`` of a converted model, OpenVINO keeps the compiled model there too (its ``CACHE_DIR``,
    keyed by the graph and these options; a broken entry is recompiled): a later process compiles Grounding
    DINO in ~0.9 s instead of ~4 s. One subfolder per CPU, as a compiled model is made for its instruction set;
    none where it cannot be written (OpenVINO would fail the compilation).
    """
    config: dict[str, str | int] = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
                                    "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    if folder is not None:
        compiled = folder / f"compiled-{hashlib.sha256(' '.join(sorted(cpu_flags())).encode()).hexdigest()[:12]}"
        try:
            compiled.mkdir(exist_ok=True)
        except OSError:
            return config
        if os.access(compiled, os.W_OK):
            config["CACHE_DIR"] = str(compiled)
    return config


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported here."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


SAM_CONVERT_MEMORY_GB = 10.0  # a SAM encoder conversion past this much memory is stopped (ViT-B peaks near 3 GiB)
# OpenVINO over PyTorch fp32 for SAM encoders, per precision: the lower of the runs measured so far (models/auto.py)
EXPECTED_SPEEDUP = {"fp32": 2.9, "bf16": 4.7}
PRIOR_CONVERT_SECONDS_PER_MPARAM = 0.6  # a SAM encoder conversion's cost before this machine measured one (ViT-B: ~50 s)
_COSTS = "conversion-costs.json"  # per machine, in the runtime cache: seconds per million parameters measured


class OpenVinoImageEncoder:
    """A segmenter's image encoder converted with ``openvino.convert_model`` and run by OpenVINO's CPU plugin,
    never in front of the first image: until the converted model is ready, the model's own PyTorch encoder runs.

    A converted model found in the cache (``runtime_cache``, keyed by the weights, the input size and the library
    versions) is compiled at once. Otherwise it is converted in a background **child process** (memory-limited,
    one per machine at a time) only when that pays off: :meth:`expect` tells how many images the job has
    (``None``: a server, open-ended), and after the first PyTorch encoding the saving still to be had (images
    left × the measured PyTorch time × (1 − 1/:data:`EXPECTED_SPEEDUP` of the precision)) is weighed against the
    conversion's cost on this machine (recorded after each conversion). :meth:`prepare` converts now
    (``prelabel warmup``); :meth:`close` stops a conversion still running (at exit).
    ``precision`` (``fp32`` or ``bf16``) is OpenVINO's ``INFERENCE_PRECISION_HINT``; the IR is the same f32 graph.
    ``runtime`` says what runs now: ``torch`` until the switch, then ``openvino``.
    """

    def __init__(self, model: nn.Module, image_size: int, cache_dir: str | Path = DEFAULT_RUNTIME_CACHE,
                 precision: str = "fp32", convert_memory_gb: float = SAM_CONVERT_MEMORY_GB) -> None:
        self._ov = openvino_for("sam-runtime", precision)
        self.model = model
        self.image_size = image_size
        self.precision = precision
        self.cache_dir = Path(cache_dir).expanduser()
        self.convert_memory_bytes = int(convert_memory_gb * 1024**3)
        self.key = cache_key(model, "openvino", "ir-f32", image_size, ("openvino",))
        self._mparams = sum(p.numel() for p in model.vision_encoder.parameters()) / 1e6  # a conversion costs by these
        self.path = self.cache_dir / "openvino" / self.key / "image_encoder.xml"
        self.convert_seconds = 0.0  # spent converting in this process (0.0: the cache had it, or none yet)
        self.compile_seconds = 0.0
        self.compiled = None
        self.torch_runs = 0  # encodings PyTorch ran while no converted model was ready
        self._torch_seconds = 0.0
        self._expected: int | None = None  # images of this job (None: open-ended, e.g. a server)
        self._decided = True  # nothing to decide until a job says what it expects (expect)
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        if self.path.is_file():
            self._compile()

    @property
    def runtime(self) -> str:
        return "openvino" if self.compiled is not None else "torch"

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        compiled = self.compiled
        if compiled is None:
            started = time.perf_counter()
            embeddings = self.model.get_image_embeddings(pixel_values)
            with self._lock:
                self.torch_runs += 1
                self._torch_seconds = time.perf_counter() - started
            self._decide()
            return embeddings
        results = compiled.create_infer_request().infer([pixel_values.detach().float().cpu().numpy()])
        tensors = tuple(torch.from_numpy(results[out].copy()) for out in compiled.outputs)
        return tensors[0] if len(tensors) == 1 else tensors

    def expect(self, images: int | None) -> None:
        """This job has ``images`` images to encode (``None``: open-ended, convert at once in the background)."""
        with self._lock:
            self._expected, self._decided = images, False
            self.torch_runs = 0
        if images is None:
            self.convert_in_background()

    def prepare(self) -> None:
        """Convert (in a child process) and compile now, unless ready; raises :class:`RuntimeUnavailable`."""
        if self.compiled is not None:
            return
        started = time.perf_counter()
        with exclusive(self.path.parent.parent / f".{self.key}.lock"):  # one conversion per machine at a time
            if not self.path.is_file():
                cached_conversion(self.cache_dir, "openvino", self.key, self.path.name, self._convert)
                self.convert_seconds = time.perf_counter() - started
                self._record_cost(self.convert_seconds)
        self._compile()
        if self.compiled is None:
            raise RuntimeUnavailable(f"the converted encoder at {self.path} could not be compiled (see the log)")

    def convert_in_background(self) -> None:
        """Start :meth:`prepare` in a background thread (once); until it is done, PyTorch encodes."""
        with self._lock:
            if self.compiled is not None or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._prepare_logged, name="openvino-sam-encoder", daemon=True)
        log.info("OpenVINO SAM encoder: converting in the background; PyTorch encodes meanwhile")
        atexit.register(self.close)
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop a background conversion (its child is killed) and wait for the thread. Registered at exit: a job
        that ends first must leave no conversion process behind, nor a thread inside OpenVINO at finalisation."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background conversion, if one was started."""
        if self._thread is not None:
            self._thread.join(timeout)

    def conversion_estimate(self) -> float:
        """Seconds a conversion of this encoder is expected to take here (measured before, else the prior)."""
        try:
            per_mparam = float(json.loads((self.cache_dir / _COSTS).read_text())["seconds_per_mparam"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError):  # none measured yet, or an unreadable record
            per_mparam = PRIOR_CONVERT_SECONDS_PER_MPARAM
        return self._mparams * per_mparam

    def _decide(self) -> None:
        """After the first PyTorch encoding of a job: convert in the background when it pays off."""
        with self._lock:
            if self._decided:
                return
            self._decided = True
            left = None if self._expected is None else self._expected - self.torch_runs
        if left is None:
            self.convert_in_background()
            return
        saving = left * self._torch_seconds * (1 - 1 / EXPECTED_SPEEDUP[self.precision])
        cost = self.conversion_estimate()
        if saving > cost:
            log.info("OpenVINO SAM encoder: the %d image(s) left would save ~%.1f s, converting costs ~%.0f s",
                     left, saving, cost)
            self.convert_in_background()
        else:
            log.info("OpenVINO SAM encoder: not converting: the %d image(s) left would save ~%.1f s, converting "
                     "costs ~%.0f s; PyTorch encodes. `prelabel warmup` converts ahead of a job", left, saving, cost)

    def _prepare_logged(self) -> None:
        try:
            self.prepare()
        except RuntimeUnavailable as exc:  # includes ConversionFailed: the encoder stays in PyTorch
            (log.debug if self._closing.is_set() else log.warning)(
                "OpenVINO SAM encoder: no converted model, PyTorch keeps encoding: %s", exc)
            return
        log.info("OpenVINO SAM encoder: ready (converted in %.0f s, compiled in %.1f s); it encodes from now on",
                 self.convert_seconds, self.compile_seconds)

    def _convert(self, out: Path) -> None:
        weights = out.parent / "weights"
        self.model.save_pretrained(weights)
        try:
            convert_in_child(__name__, [str(weights), str(out), str(self.image_size)], self.convert_memory_bytes,
                             "PRELABEL_SAM_CONVERT_MEMORY_GB", stop=self._closing)
        finally:
            shutil.rmtree(weights, ignore_errors=True)

    def _compile(self) -> None:
        """Compile the IR on disk; a corrupt entry is removed (and so rebuilt by the next conversion)."""
        started = time.perf_counter()
        try:
            core = self._ov.Core()
            compiled = core.compile_model(core.read_model(str(self.path)), "CPU",
                                          openvino_config(self.precision, self.path.parent))
        except RuntimeError as exc:  # OpenVINO's error for an unreadable or inconsistent IR
            log.warning("OpenVINO SAM encoder: the cached model %s is corrupt (%s): removed, it will be rebuilt",
                        self.path.parent, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            shutil.rmtree(self.path.parent, ignore_errors=True)
            return
        self.compile_seconds = time.perf_counter() - started
        self.compiled = compiled

    def _record_cost(self, seconds: float) -> None:
        try:
            (self.cache_dir / _COSTS).write_text(json.dumps({"seconds_per_mparam": seconds / self._mparams}))
        except OSError as exc:
            log.warning("OpenVINO SAM encoder: cannot record the conversion's cost (%s)", exc)


def convert_encoder(weights: Path, out: Path, image_size: int) -> None:
    """Convert the image encoder of the segmenter saved in ``weights`` (``save_pretrained``) into the IR ``out``."""
    import openvino as ov  # optional: the [openvino] extra

    model = AutoModel.from_pretrained(weights).float().eval()
    example = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
        converted = ov.convert_model(_EncoderForExport(model).eval(), example_input=(example,))
    ov.save_model(converted, str(out), compress_to_fp16=False)


def main(argv: list[str] | None = None) -> None:
    """The conversion child: ``python -m prelabel.models.runtimes WEIGHTS OUT IMAGE_SIZE``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("weights", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("image_size", type=int)
    args = parser.parse_args(argv)
    convert_encoder(args.weights, args.out, args.image_size)
    report_peak()


if __name__ == "__main__":
    main()
