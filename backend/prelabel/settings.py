"""Settings shared by the CLI, the server and the CVAT functions: defaults < config file < environment."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from prelabel.labels import LabelPrompt, labels_from_mapping, parse_labels
from prelabel.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER
from prelabel.pipeline import LabelerConfig

# Settings read from plain (non-PRELABEL_) variables, as Label Studio's own tools name them.
_PLAIN_ENV = {"label_studio_url": "LABEL_STUDIO_URL", "label_studio_api_key": "LABEL_STUDIO_API_KEY"}
_SECRETS = ("label_studio_api_key", "basic_auth_pass")


@dataclass(frozen=True)
class Settings:
    """Every knob, each also settable as ``PRELABEL_<NAME>`` (upper case) or in a YAML/TOML file."""

    detector: str = DEFAULT_DETECTOR
    segmenter: str = DEFAULT_SEGMENTER
    device: str = "auto"
    dtype: str = "fp32"
    sam_runtime: str = "torch"  # the segmenter's image encoder: torch, int8 (CPU) or onnx (CPU, ONNX Runtime)
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
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        typed = {k: _coerce(known[k].type, v, k) for k, v in values.items()}
        return replace(cls(), **typed)

    def labeler_config(self) -> LabelerConfig:
        """The thresholds part, for the Labeler."""
        return LabelerConfig(self.box_threshold, self.text_threshold, self.nms_iou, self.max_detections,
                             self.review_threshold)

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
        raise ValueError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings")
    if isinstance(data.get("labels"), dict):  # labels may be given as {name: [prompts]}
        data["labels"] = ",".join(
            f"{label.name}={'|'.join(label.prompts)}" for label in labels_from_mapping(data["labels"])
        )
    return data


def _coerce(kind: Any, value: Any, name: str) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "float":
            return float(value)
        if kind == "int":
            return int(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name} must be a {kind}, got {value!r}") from exc
