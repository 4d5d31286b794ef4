"""Other runtimes of a segmenter's image encoder: dynamic int8 quantisation and ONNX Runtime.

The image encoder is where a segmenter spends its time (the decoder is ~1% of it), so only the encoder is
swapped; prompts and masks go through the same PyTorch decoder. Each runtime must agree with fp32 PyTorch
on the same weights before it is trusted (``prelabel bench --sections runtimes`` measures it).
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

SAM_RUNTIMES = ("torch", "int8", "onnx")


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


class OnnxImageEncoder:
    """A segmenter's image encoder exported with ``torch.onnx`` and run by ONNX Runtime.

    The export happens once, at load time, into a private temporary folder; ONNX Runtime gets as many
    intra-op threads as torch has. CPU only: on a GPU, fp16/bf16 PyTorch is the faster path.

    ONNX Runtime's CPU memory arena is off: with it, every later encoder run in the process, PyTorch's
    (Grounding DINO, other encoders) and its own, got slower run after run (SAM ViT-B 14 s to 21-23 s after
    two ONNX runs on the 2-core bench machine); without it both stay at their own speed.
    """

    def __init__(self, model: nn.Module, image_size: int) -> None:
        import onnxruntime as ort

        self._dir = tempfile.TemporaryDirectory(prefix="prelabel-onnx-")
        path = Path(self._dir.name) / "image_encoder.onnx"
        started = time.perf_counter()
        example = torch.zeros(1, 3, image_size, image_size)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
            torch.onnx.export(_EncoderForExport(model).eval(), (example,), str(path),
                              input_names=["pixel_values"], dynamo=False, opset_version=17)
        self.export_seconds = time.perf_counter() - started
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3  # errors only: shape-merge notices are noise
        options.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        log.info("exported the image encoder to ONNX in %.1f s", self.export_seconds)

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, {"pixel_values": pixel_values.detach().float().cpu().numpy()})
        tensors = tuple(torch.from_numpy(out) for out in outputs)
        return tensors[0] if len(tensors) == 1 else tensors
