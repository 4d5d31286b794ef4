"""Benchmark results: rows with targets marked met/missed, printed as a table and written as JSON + Markdown."""

from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_COMPARE = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Row:
    """One measured figure; ``target`` like ``(">=", 3.0)`` marks it met or missed."""

    section: str
    metric: str
    value: float
    unit: str
    target: tuple[str, float] | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        op, bound = self.target
        return bool(_COMPARE[op](self.value, bound))

    @property
    def verdict(self) -> str:
        return {None: "", True: "MET", False: "MISSED"}[self.met]

    def target_text(self) -> str:
        return f"{self.target[0]} {self.target[1]:g}" if self.target else ""


@dataclass
class Report:
    """Everything one ``prelabel bench`` run measured, with the environment it ran in."""

    environment: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)

    def table(self) -> str:
        """The rows as an aligned plain-text table."""
        header = ("section", "metric", "value", "unit", "target", "result")
        body = [(r.section, r.metric, _fmt(r.value), r.unit, r.target_text(), r.verdict) for r in self.rows]
        widths = [max(len(str(line[i])) for line in (header, *body)) for i in range(len(header))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in (header, *body)]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def markdown(self) -> str:
        """The environment, the table and every note, as Markdown."""
        env = "\n".join(f"- {k}: {v}" for k, v in self.environment.items())
        rows = "\n".join(
            f"| {r.section} | {r.metric} | {_fmt(r.value)} {r.unit} | {r.target_text()} | {r.verdict} | {r.note} |"
            for r in self.rows
        )
        profile = "".join(f"\n\n### Profile: {name}\n\n```\n{text}\n```" for name, text in
                          self.details.get("profile", {}).items())
        return (f"## Environment\n\n{env}\n\n## Results\n\n| section | metric | value | target | result | note |\n"
                f"|---|---|---|---|---|---|\n{rows}{profile}\n")

    def to_json(self) -> dict[str, Any]:
        rows = [{**asdict(r), "met": r.met} for r in self.rows]
        return {"environment": self.environment, "rows": rows, "details": self.details}

    def write(self, out: Path) -> tuple[Path, Path]:
        """``out`` with ``.json`` and ``.md`` suffixes; returns both paths."""
        out.parent.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
        json_path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        md_path.write_text(self.markdown(), encoding="utf-8")
        return json_path, md_path


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
