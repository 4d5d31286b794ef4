"""Converted image encoders (ONNX, OpenVINO) cached on disk, ``auto`` resolution, and no repeated backbone work."""

import numpy as np
import pytest
import torch

from prelabel.bench.timing import mask_iou
from prelabel.core.errors import ModelLoadError
from prelabel.core.labels import parse_labels
from prelabel.models import auto, devices, runtimes
from prelabel.models.random_weights import build_sam
from prelabel.models.registry import load_detector, load_segmenter
from prelabel.pipeline import build_labeler, planned_model_version
from prelabel.pipeline.build import planned_models, resolved
from prelabel.settings import Settings

BOXES = np.array([[5, 5, 60, 50], [40, 20, 135, 85], [0, 0, 140, 90]], dtype=np.float32)
ENCODERS = {"onnx": runtimes.OnnxImageEncoder, "openvino": runtimes.OpenVinoImageEncoder}


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).integers(0, 255, (90, 140, 3), dtype=np.uint8)


def _forbid(monkeypatch, runtime):
    def fail(*_, **__):
        raise AssertionError("converted again although the cache has this model")

    if runtime == "onnx":
        monkeypatch.setattr(torch.onnx, "export", fail)
    else:
        import openvino

        monkeypatch.setattr(openvino, "convert_model", fail)


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_a_converted_encoder_is_cached_on_disk_and_reused(runtime, tmp_path, monkeypatch):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    model = build_sam("random-tiny")[0]
    pixels = torch.randn(1, 3, 128, 128)
    first = ENCODERS[runtime](model, 128, tmp_path)
    if runtime == "openvino":
        assert first.runtime == "torch", "not converted in front of the first image"
        first.prepare()
    assert first.convert_seconds > 0 and first.path.is_file() and str(first.path).startswith(str(tmp_path / runtime))
    _forbid(monkeypatch, runtime)
    second = ENCODERS[runtime](model, 128, tmp_path)
    assert second.convert_seconds == 0.0 and second.path == first.path
    with torch.inference_mode():
        reference = model.get_image_embeddings(pixels)
    np.testing.assert_allclose(second(pixels).numpy(), reference.numpy(), rtol=1e-3, atol=1e-4)
    left = [p.name for p in (tmp_path / runtime).iterdir() if not p.name.endswith(".lock")]  # the workers' lock
    assert left == [first.path.parent.name], "no scratch folders left"
    if runtime == "openvino":
        assert list(first.path.parent.glob("compiled-*/*.blob")), "the compiled model is kept beside the IR"


def test_openvino_keeps_compiled_models_only_where_it_can_write(tmp_path):
    assert runtimes.openvino_config("bf16", tmp_path)["CACHE_DIR"].startswith(str(tmp_path / "compiled-"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "CACHE_DIR" not in runtimes.openvino_config("bf16", blocker), "OpenVINO would fail the compilation"
    assert "CACHE_DIR" not in runtimes.openvino_config("fp32")


def test_the_cache_key_follows_the_weights_and_the_versions(monkeypatch):
    model = build_sam("random-tiny")[0]
    key = runtimes.cache_key(model, "onnx", "fp32", 128, ("onnx",))
    assert runtimes.cache_key(model, "onnx", "fp32", 128, ("onnx",)) == key
    assert runtimes.cache_key(model, "openvino", "fp32", 128, ("onnx",)) != key
    monkeypatch.setattr(runtimes, "_version", lambda package: "0.0-other")
    assert runtimes.cache_key(model, "onnx", "fp32", 128, ("onnx",)) != key
    monkeypatch.undo()
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert runtimes.cache_key(model, "onnx", "fp32", 128, ("onnx",)) != key


def test_an_unwritable_cache_names_the_setting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(runtimes.RuntimeUnavailable, match="PRELABEL_RUNTIME_CACHE"):
        runtimes.OnnxImageEncoder(build_sam("random-tiny")[0], 128, blocker)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_openvino_segmenter_agrees_with_pytorch(dtype, image, tmp_path):
    pytest.importorskip("openvino")
    reference = load_segmenter("random-tiny", "cpu", "fp32", 64)
    seg = load_segmenter("random-tiny", "cpu", dtype, 64, "openvino", str(tmp_path), precision=dtype)
    seg.prepare_runtime()
    assert seg.model_id == "random-tiny+openvino" + ("-bf16" if dtype == "bf16" else "")
    assert seg.dtype == torch.float32, "the decoder stays fp32"
    assert seg.encoder.precision == dtype
    assert seg.box_decoder.upscale_dtype == (torch.bfloat16 if dtype == "bf16" else None), "bf16: the upscaling too"
    masks, _ = seg.segment_boxes(image, BOXES)
    assert masks.shape == (3, 90, 140)
    if dtype == "fp32":
        assert min(mask_iou(a, b) for a, b in zip(reference.segment_boxes(image, BOXES)[0], masks)) >= 0.98
    assert seg.encoder_calls == 1


def test_auto_follows_the_decision_table():
    sam = "random-full"
    assert auto.choose("cpu", sam, openvino=True, onnxruntime=True).pair == ("fp32", "openvino")
    assert auto.choose("cpu", sam, openvino=False, onnxruntime=True).pair == ("fp32", "onnx")
    assert auto.choose("cpu", sam, openvino=False, onnxruntime=False).pair == ("fp32", "torch")
    assert auto.choose("cuda", sam, openvino=True, onnxruntime=True).pair == ("fp32", "torch")
    assert auto.choose("cpu", "random-full-sam2-tiny", openvino=True, onnxruntime=True).sam_runtime == "torch"
    assert auto.choose("cpu", "random-tiny", openvino=True, onnxruntime=True).sam_runtime == "torch"
    assert auto.choose("cpu", sam, dtype="bf16", openvino=True).sam_runtime == "openvino"
    assert auto.choose("cpu", sam, sam_runtime="int8").sam_runtime == "int8", "explicit values are kept"
    assert "openvino" in auto.choose("cpu", sam, openvino=True).reason


@pytest.mark.parametrize("native_bf16", [False, True], ids=["no-native-bf16", "native-bf16"])
def test_auto_resolves_before_the_model_version(monkeypatch, native_bf16):
    monkeypatch.setattr(auto, "_installed", lambda module: module == "openvino")
    monkeypatch.setattr(devices, "native_bf16_cpu", lambda: native_bf16)
    settings = Settings(detector="random-tiny", segmenter="random-full", device="cpu")
    assert (settings.dtype, settings.sam_runtime, settings.sam_precision) == ("auto",) * 3, "auto is the default"
    concrete = resolved(settings)
    precision = "bf16" if native_bf16 else "fp32"
    assert (concrete.dtype, concrete.sam_runtime, concrete.sam_precision) == ("fp32", "openvino", precision)
    segmenter = "random-full+openvino" + ("-bf16" if native_bf16 else "")
    assert planned_models(settings) == {"detector": "random-tiny", "segmenter": segmenter, "dtype": "fp32"}
    explicit = Settings(detector="random-tiny", segmenter="random-full", device="cpu", dtype="fp32",
                        sam_runtime="openvino", sam_precision=precision)
    labels = parse_labels("cat")
    assert planned_model_version(settings, labels) == planned_model_version(explicit, labels)
    assert planned_model_version(settings, labels) != planned_model_version(
        Settings(detector="random-tiny", segmenter="random-full", device="cpu", dtype="fp32", sam_runtime="torch"),
        labels)


def test_auto_labeler_reports_what_it_runs():
    settings = Settings(detector="random-tiny", segmenter="random-tiny", device="cpu")
    labeler = build_labeler(settings)
    assert labeler.models == {"detector": "random-tiny", "segmenter": "random-tiny", "dtype": "fp32"}
    labels = parse_labels("cat")
    assert labeler.model_version(labels) == planned_model_version(settings, labels)


def test_the_detector_backbone_runs_once_per_image_for_many_prompt_chunks(image):
    detector = load_detector("random-tiny", "cpu", "fp32")
    labels = parse_labels(",".join(f"thing{i}=long thing number {i}" for i in range(8)))
    chunks = detector.chunk_prompts(labels)
    assert len(chunks) > 2, "the label list must need several prompts"
    before = detector.backbone_calls
    regions = detector.detect(image, labels, 0.0)
    assert detector.backbone_calls - before == 1
    separate = [detector._run_chunk(image, chunk) for chunk in chunks]  # one full forward each
    assert detector.backbone_calls - before == 1 + len(chunks), "outside detect, nothing is memoised"
    together = [detector._run_chunk(image, chunk, detector._pixels(image)) for chunk in chunks]
    for (boxes_a, scores_a, _), (boxes_b, scores_b, _) in zip(separate, together):
        np.testing.assert_allclose(boxes_a, boxes_b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scores_a, scores_b, rtol=1e-5, atol=1e-5)
    assert len(regions) == sum(len(boxes) for boxes, _, _ in separate)


def test_the_sam_encoder_precision_is_its_own_setting(monkeypatch):
    def precision(**kwargs) -> str:
        kwargs = {"sam_runtime": "openvino", "sam_precision": "auto", "native_bf16": True, **kwargs}
        return auto.choose("cpu", "random-full", openvino=True, **kwargs).sam_precision

    monkeypatch.setattr(auto, "OPENVINO_BF16_MET_THE_BAR", False)
    assert precision() == "fp32", "not measured to meet the bar: fp32"
    assert precision(dtype="bf16") == "bf16", "--dtype bf16 still lowers the OpenVINO encoder"
    monkeypatch.setattr(auto, "OPENVINO_BF16_MET_THE_BAR", True)
    assert precision() == "bf16" and "SAM encoder precision bf16" in auto.choose(
        "cpu", "random-full", sam_runtime="openvino", openvino=True, sam_precision="auto", native_bf16=True).reason
    assert precision(native_bf16=False) == "fp32", "emulated bf16 is slower than fp32"
    assert precision(sam_runtime="torch") == "fp32" and precision(sam_precision="fp32") == "fp32"
    with pytest.raises(ModelLoadError, match="--sam-runtime openvino"):
        load_segmenter("random-tiny", "cpu", "fp32", 64, "torch", precision="bf16")
    with pytest.raises(ModelLoadError, match="PRELABEL_SAM_PRECISION"):
        load_segmenter("random-tiny", "cpu", "fp32", 64, "torch", precision="int4")
