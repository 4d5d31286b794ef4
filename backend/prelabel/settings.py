"""Settings shared by every entry point (CLI, servers, CVAT functions): defaults < config file < environment."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt, labels_from_mapping, parse_labels
from prelabel.core.parsing import integer, parsed
from prelabel.models.specs import DEFAULT_DETECTOR, DEFAULT_SEGMENTER

# Settings read from plain (non-PRELABEL_) variables, as Label Studio's own tools name them.
_PLAIN_ENV = {"label_studio_url": "LABEL_STUDIO_URL", "label_studio_api_key": "LABEL_STUDIO_API_KEY"}
_SECRETS = ("label_studio_api_key", "basic_auth_pass", "api_token", "webhook_secret")
_INF = float("inf")
# Every numeric setting's allowed range (inclusive): a value outside it is refused when the settings are made.
_RANGES: dict[str, tuple[float, float]] = {
    "detector_convert_after": (1, _INF), "detector_convert_memory_gb": (0.1, _INF), "sam_convert_memory_gb": (0.1, _INF),
    "box_threshold": (0, 1), "text_threshold": (0, 1), "nms_iou": (0, 1), "max_detections": (1, _INF),
    "review_threshold": (0, 1), "cache_mb": (0, _INF), "max_pixels": (1, _INF), "predict_deadline_s": (0, _INF),
    "fetch_timeout_s": (0.1, _INF), "fit_every": (0, _INF), "fit_beta": (0.01, 100), "fit_min_samples": (1, _INF),
    "explore_share": (0, 1), "explore_max": (0, _INF), "explore_floor": (0, 1), "accept_precision": (0, 0.9999),
    "max_image_bytes": (1, _INF), "max_redirects": (0, 100), "max_in_flight": (1, _INF), "max_queue": (0, _INF),
    "queue_timeout_s": (0.1, _INF), "video_every": (1, _INF), "video_max_missed": (0, _INF),
    "video_match_iou": (0.01, 1), "video_tolerance": (0, 100), "video_propagate_frames": (1, _INF),
    "video_fps": (0.1, 1000), "max_video_bytes": (1, _INF), "max_video_frames": (1, _INF),
    "embedding_store_bytes": (0, _INF),
}


class SettingsError(PrelabelError):
    """A setting, config file or environment variable with a value prelabel cannot use."""


@dataclass(frozen=True)
class Settings:
    """Every knob, each also settable as ``PRELABEL_<NAME>`` (upper case) or in a YAML/TOML file."""

    detector: str = DEFAULT_DETECTOR
    segmenter: str = DEFAULT_SEGMENTER
    device: str = "auto"
    dtype: str = "auto"  # auto (the fastest that met the accuracy bar here: models/auto.py), fp32, fp16, bf16
    # The segmenter's image encoder: auto, torch, int8 (CPU), onnx (CPU, ONNX Runtime), openvino (CPU).
    sam_runtime: str = "auto"
    # SAM's precision with the OpenVINO encoder (the encoder's inference precision and the box decoder's upscaling):
    # auto (bf16 where the CPU has native bf16 and it met the accuracy bar: models/auto.py), fp32, bf16. Separate
    # from dtype, which sets the PyTorch models'.
    sam_precision: str = "auto"
    runtime_cache: str = "~/.cache/prelabel"  # converted encoders (ONNX, OpenVINO IR), keyed by weights and versions
    sam_convert_memory_gb: float = 10.0  # openvino: a SAM encoder conversion process past this much memory is stopped
    # A folder or fsspec URL (s3://, gs://) keeping image embeddings across processes; "auto": RUNTIME_CACHE/embeddings
    # for prelabel serve and batch --store-embeddings, none elsewhere; "off": none.
    embedding_store: str = "auto"
    embedding_store_bytes: int = 2 * 1024**3  # the store's budget; least recently used entries are evicted
    # The detector's runtime: auto, torch, openvino (CPU; Grounding DINO, one converted model per image shape).
    detector_runtime: str = "auto"
    detector_convert_after: int = 10  # openvino: convert an image shape once it has been seen this many times
    detector_convert_memory_gb: float = 10.0  # openvino: a conversion process past this much memory is stopped
    labels: str = ""  # "label=prompt|prompt,label2": prompts per label; used when a tool gives none
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    nms_iou: float = 0.5
    max_detections: int = 100
    review_threshold: float = 0.45
    cache_mb: int = 512
    max_pixels: int = 50_000_000
    label_studio_url: str = ""
    label_studio_api_key: str = ""
    basic_auth_user: str = ""
    basic_auth_pass: str = ""
    predict_deadline_s: float = 60.0
    fetch_timeout_s: float = 20.0
    feedback_db: str = "prelabel-data/feedback.sqlite3"  # corrections: a SQLite file, sqlite:///PATH or postgresql://URL
    fit_every: int = 0  # refit after this many new annotations (0: only on "Start training" or /train)
    fit_beta: float = 1.0  # thresholds maximise F-beta on the feedback (beta > 1 favours recall)
    fit_min_samples: int = 20  # judged regions a label needs for its threshold (and the calibration)
    explore_share: float = 0.0  # Label Studio: share of below-threshold detections shown as candidates (0: off)
    explore_max: int = 3  # at most this many candidates per task
    explore_floor: float = 0.1  # the lowest detector score explored
    accept_precision: float = 0.0  # prelabel accept's default target precision (0: 0.95); see feedback/accept.py
    # Production hardening (docs/operations.md).
    api_token: str = ""  # when set, "Authorization: Bearer <token>" is accepted (besides basic auth, if set)
    webhook_secret: str = ""  # when set, /webhook needs the header "X-Prelabel-Webhook-Secret: <secret>"
    allowed_hosts: str = ""  # image hosts besides Label Studio's: "cdn.example.com,*.s3.amazonaws.com" or "*"
    allow_private_networks: bool = False  # let image URLs reach private/loopback/link-local addresses
    local_roots: str = ""  # folders (comma-separated) the backend may read file:// and local-files images from
    max_image_bytes: int = 100 * 1024**2
    max_redirects: int = 5
    max_in_flight: int = 1  # model requests running at once per process
    max_queue: int = 16  # model requests waiting beyond that; more get 503 + Retry-After
    queue_timeout_s: float = 30.0  # a waiting model request gets 503 after this long
    log_format: str = "json"  # "json" (one object per line, with request ids) or "text"
    # Video (docs/video.md).
    video_every: int = 10  # run the image detector on every Nth frame (keyframes); tracks link them
    video_tracker: str = ""  # "" links keyframes by linear interpolation; a SAM 2 video spec tracks in between
    video_max_missed: int = 2  # a track ends after this many keyframes without a matching detection
    video_match_iou: float = 0.3  # a detection continues a track when their boxes overlap at least this much
    video_tolerance: float = 0.5  # Label Studio keyframes are thinned while interpolation stays within this (%)
    video_propagate_frames: int = 30  # frames a drawn box is propagated (interactive, CVAT-free propagate)
    video_fps: float = 25.0  # frame rate of frame folders (videos carry their own)
    max_video_bytes: int = 2 * 1024**3
    max_video_frames: int = 200_000

    def __post_init__(self) -> None:
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:  # NaN fails too
                bounds = f"at least {low:g}" if high == _INF else f"in [{low:g}, {high:g}]"
                raise SettingsError(f"setting {name} (PRELABEL_{name.upper()}) must be {bounds}, got {value!r}")

    @classmethod
    def load(cls, config_file: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
        """Defaults, overridden by ``config_file`` (``.yaml``/``.yml``/``.toml``), overridden by ``env``."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        config_file = config_file or env.get("PRELABEL_CONFIG")
        if config_file:
            values.update(_read_config(Path(config_file)))
        for f in fields(cls):
            name = _PLAIN_ENV.get(f.name, f"PRELABEL_{f.name.upper()}")
            if name in env:
                values[f.name] = env[name]
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(unknown)}")
        typed = {k: _coerce(known[k].type, v, k) for k, v in values.items()}
        return replace(cls(), **typed)

    def embedding_store_url(self, default_on: bool) -> str | None:
        """Where image embeddings are kept: the configured folder or URL; for ``auto``, ``RUNTIME_CACHE/embeddings``
        when ``default_on`` (``prelabel serve``, ``batch --store-embeddings``), else ``None``; ``off``: ``None``."""
        if self.embedding_store not in ("auto", "off"):
            return self.embedding_store
        return f"{self.runtime_cache.rstrip('/')}/embeddings" if default_on and self.embedding_store == "auto" else None

    def label_prompts(self) -> list[LabelPrompt]:
        """The configured labels (may be empty when the tool supplies them)."""
        return parse_labels(self.labels) if self.labels.strip() else []

    def prompt_map(self) -> dict[str, LabelPrompt]:
        """Configured prompts by label name."""
        return {label.name: label for label in self.label_prompts()}

    def redacted(self) -> dict[str, Any]:
        """Settings for logs, with secrets masked."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _SECRETS:
            if out[name]:
                out[name] = "***"
        return out


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SettingsError(f"config file {path} does not exist (PRELABEL_CONFIG)")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"config file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}") \
            from exc
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping of settings")
    if isinstance(data.get("labels"), dict):  # labels may be given as {name: [prompts]}
        data["labels"] = ",".join(
            f"{label.name}={'|'.join(label.prompts)}" for label in labels_from_mapping(data["labels"])
        )
    return data


def _coerce(kind: Any, value: Any, name: str) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    parse = {"float": lambda v: parsed(float, v), "int": integer, "bool": _to_bool}.get(kind, str)
    result = parse(value)
    if result is None:
        wanted = {"float": "a number", "int": "a whole number", "bool": "true or false"}[kind]
        raise SettingsError(f"setting {name} (PRELABEL_{name.upper()}) must be {wanted}, got {value!r}")
    return result


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    return None
