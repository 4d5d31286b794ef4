"""Labeling analytics from the feedback store: how much of the final labels pre-labeling supplied."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from statistics import median
from typing import Any

from prelabel.feedback.matching import Outcome
from prelabel.feedback.store import StoredOutcome


def outcome_stats(outcomes: Sequence[StoredOutcome]) -> dict[str, Any]:
    """Counts and rates of one group of outcomes.

    ``precision`` = kept / predicted; ``recall`` = kept / final regions (kept + added);
    ``prelabeled_share`` is the same as recall: the share of final regions that came from the model;
    ``untouched_share`` = accepted unchanged / final regions.
    """
    counts = Counter(o.region.outcome for o in outcomes)
    accepted, adjusted = counts[Outcome.ACCEPTED], counts[Outcome.ADJUSTED]
    deleted, added = counts[Outcome.DELETED], counts[Outcome.ADDED]
    predicted, final = accepted + adjusted + deleted, accepted + adjusted + added
    kept = accepted + adjusted
    ratio = lambda a, b: round(a / b, 4) if b else None
    return {
        "predicted": predicted, "final": final, "accepted": accepted, "adjusted": adjusted,
        "deleted": deleted, "added": added,
        "acceptance_rate": ratio(accepted, predicted), "adjusted_rate": ratio(adjusted, predicted),
        "deleted_rate": ratio(deleted, predicted), "added_share": ratio(added, final),
        "precision": ratio(kept, predicted), "recall": ratio(kept, final), "untouched_share": ratio(accepted, final),
    }


def build_report(outcomes: Sequence[StoredOutcome], annotations: Sequence[tuple[str, float | None]]) -> dict[str, Any]:
    """Overall, per-label and per-model-version statistics (versions in order of first feedback)."""
    versions = list(dict.fromkeys(o.model_version for o in outcomes))
    labels = sorted({o.region.label for o in outcomes})
    lead = {v: [t for version, t in annotations if version == v and t is not None] for v in versions}
    return {
        "annotations": len(annotations),
        "overall": outcome_stats(outcomes),
        "labels": {label: outcome_stats([o for o in outcomes if o.region.label == label]) for label in labels},
        "model_versions": {
            v: {"annotations": sum(1 for version, _ in annotations if version == v),
                "median_lead_time_s": round(median(lead[v]), 2) if lead[v] else None,
                **outcome_stats([o for o in outcomes if o.model_version == v])}
            for v in versions
        },
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text tables."""
    columns = ("predicted", "accepted", "adjusted", "deleted", "added", "precision", "recall", "untouched_share")
    header = f"{'':28}" + "".join(f"{c:>16}" for c in columns)
    fmt = lambda v: "-" if v is None else f"{v:.1%}" if isinstance(v, float) else str(v)
    row = lambda name, stats: f"{name[:28]:28}" + "".join(f"{fmt(stats[c]):>16}" for c in columns)
    lines = [f"annotations with feedback: {report['annotations']}", header, row("all", report["overall"])]
    lines += ["", "per label:", header] + [row(k, v) for k, v in report["labels"].items()]
    lines += ["", "per model_version:", header] + [row(k, v) for k, v in report["model_versions"].items()]
    return "\n".join(lines)
