"""The label spec of a CVAT detector function: generate it, read it back, write it into function.yaml.

Each spec entry is what CVAT needs (``id``, ``name``, ``type``) plus ``prompts`` (and ``box_threshold``
when set) for us. CVAT's ``LambdaFunction`` reads only ``name``, ``type`` and ``attributes`` from
each entry and ignores other keys, so the prompts travel in the same JSON that CVAT reads.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt, check_labels, parse_labels
from prelabel.cvat.shapes import SHAPE_TYPES

_ANNOTATIONS_KEY = re.compile(r"^ +annotations:\s*$")
_SPEC_KEY = re.compile(r"^(?P<indent> +)spec:")


class SpecError(PrelabelError):
    """A CVAT function spec or function.yaml prelabel cannot read or write."""


@dataclass(frozen=True)
class CvatLabels:
    """The labels of a CVAT function: text prompts for the detector, a shape type per label for CVAT."""

    prompts: tuple[LabelPrompt, ...]
    types: Mapping[str, str]

    def __post_init__(self) -> None:
        check_labels(list(self.prompts))
        for label in self.prompts:
            kind = self.types.get(label.name)
            if kind not in SHAPE_TYPES:
                raise SpecError(f"label {label.name!r} has type {kind!r}; use one of {', '.join(SHAPE_TYPES)}")

    @classmethod
    def parse(cls, text: str, default_type: str = "mask", types: Mapping[str, str] | None = None) -> CvatLabels:
        """Labels from the ``parse_labels`` syntax; ``types`` overrides ``default_type`` per label name."""
        prompts = tuple(parse_labels(text))
        types = dict(types or {})
        unknown = sorted(set(types) - {label.name for label in prompts})
        if unknown:
            raise SpecError(f"types given for labels that are not in --labels: {', '.join(unknown)}")
        return cls(prompts, {label.name: types.get(label.name, default_type) for label in prompts})

    @classmethod
    def from_spec(cls, spec: str | Sequence[Mapping[str, Any]] | None) -> CvatLabels:
        """Labels from a spec (JSON text or parsed); a missing ``type`` means ``mask``, missing prompts the name."""
        entries = json.loads(spec or "[]") if isinstance(spec, str) or spec is None else spec
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) and "name" in e for e in entries):
            raise SpecError("the function spec must be a JSON list of objects with a 'name'")
        prompts = tuple(LabelPrompt(str(e["name"]), _prompts(e), e.get("box_threshold")) for e in entries)
        return cls(prompts, {str(e["name"]): e.get("type", "mask") for e in entries})

    def to_spec(self) -> list[dict[str, Any]]:
        """The ``metadata.annotations.spec`` entries."""
        spec = []
        for index, label in enumerate(self.prompts):
            entry: dict[str, Any] = {"id": index, "name": label.name, "type": self.types[label.name]}
            entry["prompts"] = list(label.prompts)
            if label.box_threshold is not None:
                entry["box_threshold"] = label.box_threshold
            spec.append(entry)
        return spec

    def spec_json(self) -> str:
        """The spec as JSON text for function.yaml, one label per line."""
        entries = ",\n".join(f"  {json.dumps(entry, ensure_ascii=False)}" for entry in self.to_spec())
        return f"[\n{entries}\n]"


def read_function_yaml(path: str | Path) -> dict[str, Any]:
    """A function.yaml as a dict."""
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(config, dict) or "metadata" not in config:
        raise SpecError(f"{path} is not a Nuclio function.yaml (no 'metadata')")
    return config


def labels_from_function_yaml(path: str | Path) -> CvatLabels:
    """The labels in ``metadata.annotations.spec`` of a function.yaml."""
    annotations = read_function_yaml(path)["metadata"].get("annotations") or {}
    return CvatLabels.from_spec(annotations.get("spec"))


def replace_spec(text: str, labels: CvatLabels) -> str:
    """function.yaml text with its ``metadata.annotations.spec`` block replaced; comments and layout kept."""
    lines = text.splitlines()
    annotations = next((i for i, line in enumerate(lines) if _ANNOTATIONS_KEY.match(line)), len(lines))
    start = next((i for i in range(annotations, len(lines)) if _SPEC_KEY.match(lines[i])), None)
    if start is None:
        raise SpecError("no metadata.annotations.spec key found")
    indent = _SPEC_KEY.match(lines[start])["indent"]
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > len(indent)):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # keep blank lines that separate sections
        end -= 1
    block = [f"{indent}spec: |"] + [f"{indent}  {line}" for line in labels.spec_json().splitlines()]
    updated = "\n".join(lines[:start] + block + lines[end:]) + "\n"
    if _spec_of(yaml.safe_load(updated)) != labels.to_spec():
        raise SpecError("the spec could not be replaced cleanly; edit metadata.annotations.spec by hand")
    return updated


def write_spec(path: str | Path, labels: CvatLabels) -> None:
    """Put the spec into a function.yaml (``.yaml``/``.yml``, must exist) or write it as JSON to any other file."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SpecError(f"{path} does not exist: --out updates an existing Nuclio function.yaml (copy one of "
                            f"cvat_serverless/*/nuclio/function*.yaml first), or give a .json file for the spec alone")
        path.write_text(replace_spec(path.read_text(encoding="utf-8"), labels), encoding="utf-8")
    else:
        path.write_text(labels.spec_json() + "\n", encoding="utf-8")


def spec_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``prelabel cvat spec``."""
    parser.add_argument("--labels", required=True, help="e.g. 'rivet=oxidized rivet|rusted bolt,crack@0.3'")
    parser.add_argument("--type", default="mask", choices=SHAPE_TYPES, help="shape type of every label")
    parser.add_argument("--label-type", action="append", default=[], metavar="NAME=TYPE",
                        help="shape type of one label (repeatable)")
    parser.add_argument("--out", action="append", default=[], metavar="FILE",
                        help="an existing function.yaml to update in place (repeatable), or a .json file to write; "
                             "default: print the JSON")


def run_spec(args: argparse.Namespace) -> int:
    """Print the spec, or write it into function.yaml files; returns the exit code."""
    types = dict(_name_type(item) for item in args.label_type)
    labels = CvatLabels.parse(args.labels, args.type, types)
    for out in args.out:
        write_spec(out, labels)
        print(f"wrote the spec of {len(labels.prompts)} label(s) into {out}")
    if not args.out:
        print(labels.spec_json())
    return 0


def _name_type(item: str) -> tuple[str, str]:
    name, sep, kind = item.rpartition("=")
    if not sep or not name.strip():
        raise SpecError(f"--label-type wants NAME=TYPE, got {item!r}")
    return name.strip(), kind.strip()


def _prompts(entry: Mapping[str, Any]) -> tuple[str, ...]:
    prompts = entry.get("prompts") or ()
    return (prompts,) if isinstance(prompts, str) else tuple(str(p) for p in prompts)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _spec_of(config: Any) -> Any:
    return json.loads(config["metadata"]["annotations"]["spec"])
