"""The active-learning simulation (benchmarks/active_learning_sim.py) keeps its claims on a small run."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "active_learning_sim.py"


@pytest.fixture(scope="module")
def sim():
    spec = importlib.util.spec_from_file_location("active_learning_sim", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(sim):
    return sim.run(n_images=240, seed=1)


def test_simulation_shows_calibration_threshold_and_ranking_gains(sim, result):
    assert result["ece"]["fitted"] < result["ece"]["heuristic"] / 2
    assert result["calibration_decision"].startswith("applied")
    validation = result["calibration_validation"]
    assert validation["monotone"]["log_loss"] < validation["current"]["log_loss"]
    f1 = lambda p, r: 2 * p * r / (p + r)  # noqa: E731
    assert f1(*result["learned"]) >= f1(*result["default"]) - 0.01
    top = result["top_k"][0.2]
    assert top["heuristic"] > 1.3 * top["random"] and top["fitted"] > 1.3 * top["random"]
    overall = result["feedback_report"]["overall"]
    assert overall["predicted"] > 0 and overall["added"] > 0 and overall["deleted"] > 0


def test_learning_from_adjustments_cuts_edit_effort(result):
    assert set(result["box_correction"]) == {"crack"}, "only crack's boxes are systematically off"
    effort = result["edit_effort"]
    before, after = effort["learned_thresholds"], effort["learned_thresholds_and_boxes"]
    assert after["mean_iou"] > before["mean_iou"] + 0.02
    assert after["unchanged_share"] > before["unchanged_share"]


@pytest.mark.parametrize("seed", [1, 2])
def test_auto_accepted_tasks_meet_the_target_precision(sim, result, seed):
    accept = (result if seed == 1 else sim.run(n_images=240, seed=seed))["accept"]
    assert accept["cut"] is not None and accept["precision_lower_bound"] >= sim.TARGET_PRECISION
    assert accept["test"]["tasks"] > 10 and accept["test"]["true_precision"] >= sim.TARGET_PRECISION


def test_degenerate_feedback_is_refused(sim):
    degenerate = sim.run_degenerate(12, seed=0)
    assert degenerate["calibration"]["decision"] == "kept current" and not degenerate["applied_calibration"]
    assert "refused" in degenerate["calibration"]["multi_signal"]["verdict"]
    assert degenerate["learned_thresholds"] == {}


def test_exploration_candidates_let_a_too_high_threshold_fall(sim):
    result = sim.run_exploration(240, seed=1)
    without, with_ = result["without"], result["with"]
    assert without["thresholds"]["scratch"] == 0.75 and without["candidates"] == 0, "nothing below it was judged"
    assert with_["thresholds"]["scratch"] < 0.6, "the candidates' judgements lowered it"
    assert with_["f1"] > without["f1"] + 0.03 and with_["recall"] > without["recall"]
    assert 0 < with_["extra_regions"] < 0.15 and with_["exploration"]["candidates"] == with_["candidates"]
