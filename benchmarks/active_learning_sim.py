"""Active-learning simulation with a known ground truth.

Pretrained weights cannot be used here, so the detector is SIMULATED (``simulate_detections``): for
generated ground-truth objects it emits jittered true boxes and false positives, with scores that are
miscalibrated differently per label, like a text-prompted detector on a custom domain. Everything after
it is prelabel's real code: uncertainty signals and confidence (``prelabel.core.uncertainty``), the Label
Studio adapter, the webhook service with its SQLite store, matching, fitting, and ranking. A simulated
annotator corrects each prediction toward the ground truth in Label Studio's result format.

Half the images give feedback; the other half measure:
  (a) expected calibration error of the region confidence, heuristic vs fitted;
  (b) precision / recall against the ground truth at the default vs the learned thresholds;
  (c) tasks with a real error found in the first k tasks of the uncertainty ranking vs a random order.

    python benchmarks/active_learning_sim.py --images 600 --seed 0
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from prelabel.core.geometry import box_iou, box_to_mask, clip_boxes
from prelabel.core.regions import Regions
from prelabel.core.uncertainty import score_regions, task_score
from prelabel.feedback.geometry_correction import BoxCorrection
from prelabel.feedback.matching import match_shapes
from prelabel.feedback.metrics import expected_calibration_error
from prelabel.feedback.report import format_report
from prelabel.feedback.service import FeedbackService, FeedbackSettings
from prelabel.feedback.store import FeedbackStore
from prelabel.labelstudio.config import parse_label_config
from prelabel.labelstudio.result_items import result_shapes
from prelabel.labelstudio.results import regions_to_results
from prelabel.labelstudio.webhooks import handle_webhook
from prelabel.pipeline.exploration import Exploration, split_candidates

LABELS = ("rivet", "crack", "scratch")
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="bbox" toName="image">'
          + "".join(f'<Label value="{name}"/>' for name in LABELS) + "</RectangleLabels></View>")
SIZE = (320, 240)
DEFAULT_THRESHOLD = 0.35
# Per label: logit means of true and false detections, and how often a true object is found at all.
# rivet: over-confident false positives (its best cut is high); crack: sloppy boxes; scratch: well behaved.
TRUE_LOGIT = {"rivet": 1.6, "crack": 0.6, "scratch": 1.0}
FALSE_LOGIT = {"rivet": 0.4, "crack": -1.2, "scratch": -0.8}
JITTER = {"rivet": 0.015, "crack": 0.05, "scratch": 0.025}
# crack's boxes are also systematically off: 20% too narrow, 10% too short, shifted left by 8% of the width
# (what a detector does on thin, faint structures); the others have zero-mean errors only.
BIAS = {"crack": (-0.08, 0.0, np.log(0.8), np.log(0.9))}
TARGET_PRECISION = 0.95


@dataclass(frozen=True)
class Image:
    """A generated image's ground truth."""

    boxes: np.ndarray  # (K, 4)
    labels: np.ndarray  # (K,)


def generate(rng: np.random.Generator, n: int) -> list[Image]:
    """Images with 0-5 objects of random labels, sizes 12-80 px."""
    images = []
    for _ in range(n):
        k = int(rng.integers(0, 6))
        wh = rng.uniform(12, 80, (k, 2))
        xy = rng.uniform(0, 1, (k, 2)) * (np.array(SIZE) - wh)
        images.append(Image(np.concatenate([xy, xy + wh], axis=1), rng.integers(0, len(LABELS), k)))
    return images


def simulate_detections(rng: np.random.Generator, image: Image) -> Regions:
    """The SIMULATED detector + segmenter: candidate regions above the default threshold, with masks."""
    boxes, scores, labels, good = [], [], [], []
    for box, label in zip(image.boxes, image.labels):
        name = LABELS[label]
        size = box[2:] - box[:2]
        biased = BoxCorrection({name: BIAS[name]}).apply_boxes(box[None], [name])[0] if name in BIAS else box
        boxes.append(biased + rng.normal(0, JITTER[name], 4) * np.tile(size, 2))
        scores.append(TRUE_LOGIT[name] + rng.normal(0, 1.0))
        labels.append(label)
        good.append(True)
        if rng.uniform() < 0.08:  # the same object also fires for another label
            boxes.append(box + rng.normal(0, 0.05, 4) * np.tile(size, 2))
            scores.append(TRUE_LOGIT[name] - 0.5 + rng.normal(0, 1.0))
            labels.append((label + int(rng.integers(1, len(LABELS)))) % len(LABELS))
            good.append(False)
    for _ in range(int(rng.poisson(0.6))):  # background false positives
        label = int(rng.integers(0, len(LABELS)))
        wh = rng.uniform(12, 80, 2)
        xy = rng.uniform(0, 1, 2) * (np.array(SIZE) - wh)
        boxes.append(np.concatenate([xy, xy + wh]))
        scores.append(FALSE_LOGIT[LABELS[label]] + rng.normal(0, 1.0))
        labels.append(label)
        good.append(False)
    probs = 1 / (1 + np.exp(-np.array(scores, dtype=np.float64).reshape(-1)))
    keep = probs >= DEFAULT_THRESHOLD
    width, height = SIZE
    boxes_xyxy = clip_boxes(np.array(boxes, dtype=np.float32).reshape(-1, 4)[keep], width, height)
    good_kept = np.array(good, dtype=bool)[keep]
    masks, mask_scores = [], []
    for box, is_good in zip(boxes_xyxy, good_kept):
        shrink = 0.05 if is_good else rng.uniform(0.1, 0.35)  # false regions segment worse
        w, h = box[2] - box[0], box[3] - box[1]
        inner = box + np.array([w, h, -w, -h]) * shrink
        masks.append(box_to_mask(inner, width, height))
        mask_scores.append(np.clip(rng.normal(0.9 if is_good else 0.75, 0.08), 0, 1))
    regions = Regions(SIZE, LABELS, boxes_xyxy, probs[keep], np.array(labels)[keep],
                      np.array(masks).reshape(-1, height, width), {"mask_score": np.array(mask_scores)})
    return regions


def annotate(image: Image, prediction: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[bool]]:
    """The SIMULATED annotator: keeps predicted boxes that hit a true object of the same label (unchanged
    when IoU >= 0.9, else snapped to the truth), deletes the rest, draws the objects nobody predicted.
    Returns the annotation's result and, per predicted item, whether it was kept."""
    width, height = SIZE
    kept, found, flags = [], set(), []
    truth = image.boxes
    for item in prediction:
        (shape,) = result_shapes([item])
        same = np.flatnonzero(image.labels == LABELS.index(shape.label))
        ious = box_iou(shape.box_xyxy[None], truth[same])[0] if len(same) else np.zeros(0)
        free = [(iou, j) for iou, j in zip(ious, same) if j not in found and iou >= 0.5]
        flags.append(bool(free))
        if not free:
            continue
        iou, j = max(free)
        found.add(j)
        clean = {k: v for k, v in item.items() if k not in ("score", "prelabel", "meta")}
        kept.append(clean if iou >= 0.9 else {**clean, "value": box_value(truth[j], shape.label)})
    drawn = [{"from_name": "bbox", "to_name": "image", "type": "rectanglelabels", "original_width": width,
              "original_height": height, "value": box_value(truth[j], LABELS[image.labels[j]])}
             for j in range(len(truth)) if j not in found]
    return kept + drawn, flags


def box_value(box: np.ndarray, label: str) -> dict[str, Any]:
    width, height = SIZE
    x1, y1, x2, y2 = (float(v) for v in box)
    return {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
            "height": 100 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": [label]}


def errors_of(image: Image, regions: Regions) -> int:
    """True errors in a prediction: false or badly placed regions (IoU < 0.8) plus missed objects."""
    prediction = regions_to_results(regions, PARSED)
    truth = result_shapes(annotate(image, [])[0])
    outcomes = match_shapes(result_shapes(prediction), truth, 0.5, 0.8)
    return sum(o.outcome.value != "accepted" for o in outcomes)


def precision_recall(images: list[Image], predictions: list[Regions], cut: dict[str, float]) -> tuple[float, float]:
    """Against the ground truth (IoU >= 0.5, same label), keeping regions with score >= the label's cut."""
    tp = fp = total = 0
    for image, regions in zip(images, predictions):
        keep = [i for i in range(len(regions)) if regions.scores[i] >= cut.get(regions.labels[i], DEFAULT_THRESHOLD)]
        shapes = result_shapes(regions_to_results(regions.select(keep), PARSED))
        outcomes = match_shapes(shapes, result_shapes(annotate(image, [])[0]))
        tp += sum(o.kept for o in outcomes)
        fp += sum(o.outcome.value == "deleted" for o in outcomes)
        total += len(image.boxes)
    return tp / max(tp + fp, 1), tp / max(total, 1)


PARSED = parse_label_config(CONFIG)


def feed(service: FeedbackService, images: list[Image], detections: list[Regions],
         keep_random: np.random.Generator | None = None) -> None:
    """Webhooks of the simulated annotator (or, with ``keep_random``, of one who keeps a random half of the
    regions whatever they are: degenerate feedback) for predictions at the default thresholds."""
    thresholds = [DEFAULT_THRESHOLD] * len(LABELS)
    for task, (image, regions) in enumerate(zip(images, detections)):
        scored = score_regions(regions, thresholds)
        prediction = {"model_version": "prelabel-sim", "result": regions_to_results(scored, PARSED)}
        if keep_random is None:
            result = annotate(image, prediction["result"])[0]
        else:
            result = [{k: v for k, v in item.items() if k not in ("score", "prelabel", "meta")}
                      for item in prediction["result"] if keep_random.uniform() < 0.5]
        handle_webhook(service, {"action": "ANNOTATION_CREATED", "project": {"id": 1},
                                 "annotation": {"id": task, "task": task, "result": result, "prediction": prediction}})


def shown(regions: Regions, cut: dict[str, float]) -> Regions:
    """The regions at or above their label's threshold."""
    return regions.select([i for i in range(len(regions))
                           if regions.scores[i] >= cut.get(regions.labels[i], DEFAULT_THRESHOLD)])


def edit_effort(images: list[Image], predictions: list[Regions]) -> dict[str, float]:
    """Over the predicted regions the annotator keeps: mean IoU to the final (true) box, and the share
    kept unchanged (IoU >= 0.9, the simulated annotator's bar for not touching a box)."""
    ious = []
    for image, regions in zip(images, predictions):
        result = regions_to_results(regions, PARSED)
        final, kept = annotate(image, result)
        for shape, keep in zip(result_shapes(result), kept):
            if keep:
                same = np.flatnonzero(image.labels == LABELS.index(shape.label))
                ious.append(float(box_iou(shape.box_xyxy[None], image.boxes[same])[0].max()))
    ious_ = np.array(ious)
    return {"mean_iou": round(float(ious_.mean()), 4), "unchanged_share": round(float((ious_ >= 0.9).mean()), 4),
            "kept_regions": len(ious)}


def auto_accept(images: list[Image], predictions: list[Regions], calibration: Any, cut: float | None) -> dict:
    """Tasks whose every region clears ``cut`` (at least one region): how many, and their true precision."""
    accepted, regions_in, correct, perfect = 0, 0, 0, 0
    thresholds = [DEFAULT_THRESHOLD] * len(LABELS)
    for image, regions in zip(images, predictions):
        if cut is None or not len(regions):
            continue
        confidence = 1 - score_regions(regions, thresholds, calibration).uncertainty
        if (confidence >= cut).all():
            kept = annotate(image, regions_to_results(regions, PARSED))[1]
            accepted, regions_in, correct = accepted + 1, regions_in + len(kept), correct + sum(kept)
            perfect += errors_of(image, regions) == 0
    return {"tasks": accepted, "share": round(accepted / len(images), 4),
            "true_precision": round(correct / regions_in, 4) if regions_in else None,
            "tasks_without_any_error": perfect}


def run(n_images: int, seed: int, target: float = TARGET_PRECISION) -> dict[str, Any]:
    """The simulation; returns the measured numbers."""
    rng = np.random.default_rng(seed)
    images = generate(rng, n_images)
    detections = [simulate_detections(rng, image) for image in images]
    thresholds = [DEFAULT_THRESHOLD] * len(LABELS)
    half = n_images // 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        service = FeedbackService(FeedbackStore(Path(tmp) / "feedback.sqlite3"), FeedbackSettings(min_samples=30))
        feed(service, images[:half], detections[:half])
        learned = service.fit("1", PARSED.prompts, DEFAULT_THRESHOLD)
        report = service.report("1")
        cut = service.precision_cut("1", target)
    feedback_s = time.perf_counter() - started

    test_images, test_regions = images[half:], detections[half:]
    before = [score_regions(r, thresholds) for r in test_regions]
    after = [score_regions(r, thresholds, learned.calibration) for r in test_regions]
    kept = np.concatenate([annotate(image, regions_to_results(r, PARSED))[1] for image, r in zip(test_images, before)])
    conf = lambda rs: np.concatenate([1 - r.uncertainty for r in rs])  # noqa: E731
    errors = np.array([errors_of(image, r) for image, r in zip(test_images, before)])
    has_error = errors > 0
    at_learned = [shown(r, learned.thresholds) for r in test_regions]
    corrected = [learned.box_correction.apply(r) if learned.box_correction else r for r in at_learned]
    validation = learned.metrics["validation"]
    out: dict[str, Any] = {
        "images": n_images, "feedback_images": half, "feedback_seconds": round(feedback_s, 2),
        "learned_thresholds": learned.thresholds,
        "calibration_decision": validation["calibration"]["decision"],
        "calibration_validation": {k: validation["calibration"].get(k) for k in ("current", "monotone", "multi_signal")},
        "box_correction": learned.box_correction.to_dict() if learned.box_correction else {},
        "ece": {"heuristic": expected_calibration_error(conf(before), kept),
                "fitted": expected_calibration_error(conf(after), kept)},
        "default": precision_recall(test_images, test_regions, {}),
        "learned": precision_recall(test_images, test_regions, learned.thresholds),
        "edit_effort": {"default": edit_effort(test_images, test_regions),
                        "learned_thresholds": edit_effort(test_images, at_learned),
                        "learned_thresholds_and_boxes": edit_effort(test_images, corrected)},
        "accept": {"target": target, **cut.to_dict(),
                   "test": auto_accept(test_images, at_learned, learned.calibration, cut.cut)},
        "feedback_report": report,
        "tasks_with_error": int(has_error.sum()), "tasks": len(test_images),
    }
    ranking = {}
    for name, scored in (("heuristic", before), ("fitted", after)):
        order = np.argsort([task_score(r) for r in scored], kind="stable")
        ranking[name] = order
    random_orders = [rng.permutation(len(test_images)) for _ in range(200)]
    out["top_k"] = {}
    for fraction in (0.1, 0.2, 0.3, 0.5):
        k = max(1, int(fraction * len(test_images)))
        out["top_k"][fraction] = {
            "k": k,
            "random": float(np.mean([has_error[o[:k]].sum() for o in random_orders])),
            **{name: int(has_error[order[:k]].sum()) for name, order in ranking.items()},
        }
    return out


def run_degenerate(n_feedback: int, seed: int) -> dict[str, Any]:
    """Few annotations from an annotator who keeps a random half of the regions: the fit must be refused."""
    rng = np.random.default_rng(seed)
    images = generate(rng, n_feedback)
    detections = [simulate_detections(rng, image) for image in images]
    with tempfile.TemporaryDirectory() as tmp:
        service = FeedbackService(FeedbackStore(Path(tmp) / "feedback.sqlite3"), FeedbackSettings(min_samples=10))
        feed(service, images, detections, keep_random=np.random.default_rng(seed + 1000))
        learned = service.fit("1", PARSED.prompts, DEFAULT_THRESHOLD)
    validation = learned.metrics["validation"]
    return {"annotations": n_feedback, "calibration": validation["calibration"],
            "thresholds": {k: v["reason"] for k, v in validation["thresholds"].items()},
            "applied_calibration": learned.calibration is not None, "learned_thresholds": learned.thresholds}


TOO_HIGH = {"scratch": 0.75}  # a configured cut well above scratch's best (its true detections score ~0.73)


def run_exploration(n_images: int, seed: int, share: float = 0.3, max_per_task: int = 2) -> dict[str, Any]:
    """A too-high threshold (``TOO_HIGH``), feedback with and without exploration candidates (``share`` of the
    below-threshold detections down to the default cut, at most ``max_per_task`` per task), the validated fit
    of each, and precision/recall/F1 on the held-out images at the thresholds each fit ends with."""
    rng = np.random.default_rng(seed)
    images = generate(rng, n_images)
    detections = [simulate_detections(rng, image) for image in images]
    half = n_images // 2
    prompts = [replace(p, box_threshold=TOO_HIGH[p.name]) if p.name in TOO_HIGH else p for p in PARSED.prompts]
    configured = {p.name: p.box_threshold or DEFAULT_THRESHOLD for p in prompts}
    cuts = np.array([configured[name] for name in LABELS])
    out: dict[str, Any] = {"images": n_images, "feedback_images": half, "configured": configured,
                           "share": share, "max_per_task": max_per_task}
    f1 = lambda p, r: round(2 * p * r / (p + r), 4) if p + r else 0.0  # noqa: E731
    for name, explore in (("without", Exploration(0.0)), ("with", Exploration(share, max_per_task, DEFAULT_THRESHOLD))):
        shown_regions = candidates = 0
        with tempfile.TemporaryDirectory() as tmp:
            service = FeedbackService(FeedbackStore(Path(tmp) / "feedback.sqlite3"), FeedbackSettings(min_samples=30))
            for task, (image, regions) in enumerate(zip(images[:half], detections[:half])):
                split = score_regions(split_candidates(regions, cuts, explore, seed * 100_000 + task), cuts)
                n_candidates = int((split.data["explore_weight"] > 0).sum())
                shown_regions, candidates = shown_regions + len(split) - n_candidates, candidates + n_candidates
                prediction = {"model_version": "prelabel-sim", "result": regions_to_results(split, PARSED)}
                handle_webhook(service, {"action": "ANNOTATION_CREATED", "project": {"id": 1}, "annotation": {
                    "id": task, "task": task, "result": annotate(image, prediction["result"])[0],
                    "prediction": prediction}})
            learned = service.fit("1", prompts, DEFAULT_THRESHOLD)
        thresholds = {**configured, **learned.thresholds}
        p, r = precision_recall(images[half:], detections[half:], thresholds)
        validation = learned.metrics["validation"]["thresholds"]
        out[name] = {"thresholds": thresholds, "precision": round(p, 4), "recall": round(r, 4), "f1": f1(p, r),
                     "shown_regions": shown_regions, "candidates": candidates,
                     "extra_regions": round(candidates / max(shown_regions, 1), 4),
                     "scratch_fit": validation.get("scratch", {}).get("reason"),
                     "exploration": learned.metrics.get("exploration")}
    return out


def print_exploration(result: dict[str, Any]) -> None:
    print(f"\nexploration: configured thresholds {result['configured']} (scratch too high); feedback from "
          f"{result['feedback_images']} images; candidates: share {result['share']}, at most "
          f"{result['max_per_task']} per task")
    print("| feedback | scratch threshold after fit | extra regions shown | precision | recall | F1 | fit said |")
    print("|---|---|---|---|---|---|---|")
    for name in ("without", "with"):
        row = result[name]
        print(f"| {name} candidates | {row['thresholds']['scratch']} | {row['candidates']} "
              f"({row['extra_regions']:.1%} of {row['shown_regions']}) | {row['precision']:.3f} | "
              f"{row['recall']:.3f} | {row['f1']:.3f} | {row['scratch_fit']} |")


def print_table(result: dict[str, Any]) -> None:
    """The numbers as the markdown tables of docs/active-learning.md."""
    ece = result["ece"]
    (p0, r0), (p1, r1) = result["default"], result["learned"]
    f1 = lambda p, r: 2 * p * r / (p + r) if p + r else 0.0  # noqa: E731
    print(f"simulation: {result['images']} images, feedback from {result['feedback_images']} "
          f"({result['feedback_seconds']} s through webhook handling, store, validated fit and precision cut)")
    print(f"learned thresholds: {result['learned_thresholds']}")
    print(f"calibration: {result['calibration_decision']}; held-out figures:")
    for name, figures in result["calibration_validation"].items():
        if figures:
            extra = f" ({figures['verdict']})" if "verdict" in figures else ""
            print(f"  {name}: log loss {figures['log_loss']}, AUC {figures['auc']}, ECE {figures['ece']}{extra}")
    print(f"box correction (dx, dy, log sw, log sh): {result['box_correction']}\n")
    print("| measure | before fit | after fit |\n|---|---|---|")
    print(f"| expected calibration error of region confidence | {ece['heuristic']:.3f} | {ece['fitted']:.3f} |")
    print(f"| precision vs ground truth | {p0:.3f} | {p1:.3f} |")
    print(f"| recall vs ground truth | {r0:.3f} | {r1:.3f} |")
    print(f"| F1 | {f1(p0, r0):.3f} | {f1(p1, r1):.3f} |")
    effort = result["edit_effort"]
    print(f"| mean IoU of kept predictions to the truth | {effort['default']['mean_iou']:.3f} | "
          f"{effort['learned_thresholds_and_boxes']['mean_iou']:.3f} (thresholds only: "
          f"{effort['learned_thresholds']['mean_iou']:.3f}) |")
    print(f"| kept predictions left unchanged (IoU >= 0.9) | {effort['default']['unchanged_share']:.3f} | "
          f"{effort['learned_thresholds_and_boxes']['unchanged_share']:.3f} (thresholds only: "
          f"{effort['learned_thresholds']['unchanged_share']:.3f}) |\n")
    accept = result["accept"]
    test = accept["test"]
    print(f"auto-accept at target precision {accept['target']}: cut {accept['cut']} (held-out: {accept['kept_above']}"
          f" of {accept['above']} regions kept, lower bound {accept['precision_lower_bound']}); on the held-out "
          f"images {test['tasks']} tasks accepted ({test['share']:.1%}), true region precision "
          f"{test['true_precision']}, {test['tasks_without_any_error']} of them without any error\n")
    print(f"tasks with at least one true error: {result['tasks_with_error']} of {result['tasks']}\n")
    print("| first k tasks | random order (mean of 200) | uncertainty ranking (heuristic) | (fitted) |")
    print("|---|---|---|---|")
    for fraction, row in result["top_k"].items():
        print(f"| {fraction:.0%} (k={row['k']}) | {row['random']:.1f} | {row['heuristic']} | {row['fitted']} |")
    print("\nprelabel report of the feedback images:\n" + format_report(result["feedback_report"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accept-seeds", type=int, default=5, help="seeds for the auto-accept precision check")
    args = parser.parse_args()
    print_table(run(args.images, args.seed))
    print("\nauto-accept over seeds (target precision {}):".format(TARGET_PRECISION))
    print("| seed | tasks accepted | share | true precision |\n|---|---|---|---|")
    for seed in range(1, args.accept_seeds + 1):
        test = run(args.images, seed)["accept"]["test"]
        print(f"| {seed} | {test['tasks']} | {test['share']:.1%} | {test['true_precision']} |")
    degenerate = run_degenerate(12, args.seed)
    calibration = degenerate["calibration"]
    print(f"\ndegenerate feedback ({degenerate['annotations']} annotations keeping a random half of the regions): "
          f"{calibration['decision']}: {calibration['reason']}")
    print(f"  current: {calibration.get('current')}")
    for kind in ("monotone", "multi_signal"):
        if kind in calibration:
            c = calibration[kind]
            print(f"  {kind}: log loss {c['log_loss']}, AUC {c['auc']}, spread {c['spread']}: {c['verdict']}")
    print(f"  thresholds: {degenerate['thresholds']}")
    print_exploration(run_exploration(args.images, args.seed))


if __name__ == "__main__":
    main()
