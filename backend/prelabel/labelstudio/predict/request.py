"""A Label Studio ``/predict`` body, parsed and checked once; labeling configs parsed once per text."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from prelabel.core.errors import BadRequest
from prelabel.core.labels import LabelPrompt
from prelabel.labelstudio.config import LabelConfig, parse_label_config
from prelabel.labelstudio.webhooks import normalise_project


class LabelConfigs:
    """Labeling configs by their XML text, each parsed once (Label Studio sends the project's whole config with
    every ``/predict``, and ``/setup`` and fits read it too); ``prompt_map`` is the configured prompts per label."""

    def __init__(self, prompt_map: Mapping[str, LabelPrompt] | None = None, maxsize: int = 64) -> None:
        self.prompt_map = dict(prompt_map or {})
        self._cached = lru_cache(maxsize=maxsize)(self._parse)

    def parse(self, xml: Any) -> LabelConfig:
        """The parsed config; raises ``LabelConfigError`` (a bad request) for anything but a config prelabel can
        predict for."""
        return self._cached(xml) if isinstance(xml, str) else self._parse(xml)

    def _parse(self, xml: Any) -> LabelConfig:
        return parse_label_config(xml, self.prompt_map)


@dataclass(frozen=True)
class PredictRequest:
    """What Label Studio asks of ``/predict``: the tasks, their project and labeling config, and for a smart tool
    the ``context`` (the annotator's clicks, boxes or video boxes)."""

    project: str  # the normalised project id ("" when the body names none)
    tasks: list[dict[str, Any]]
    config: LabelConfig
    context: dict[str, Any]  # empty for "Retrieve Predictions" and batch predictions
    params: dict[str, Any]

    @classmethod
    def parse(cls, payload: Mapping[str, Any], configs: LabelConfigs) -> PredictRequest:
        """Check the body; a malformed one raises :class:`BadRequest` (a ``LabelConfigError`` for the config)."""
        tasks = payload.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("'tasks' must be a list of task objects")
        params = payload.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("'params' must be an object")
        context = params.get("context") or {}
        if not isinstance(context, dict):
            raise BadRequest("'params.context' must be an object")
        config = configs.parse(payload.get("label_config", ""))
        request = cls(normalise_project(payload.get("project")), tasks, config, context, params)
        if request.interactive and len(tasks) != 1:
            raise BadRequest("an interactive request must hold exactly one task")
        return request

    @property
    def interactive(self) -> bool:
        """A smart-tool request: its answer goes to the annotator's editor, not to the stored predictions."""
        return bool(self.context.get("result"))
