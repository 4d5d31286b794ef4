"""The active-learning simulation (benchmarks/active_learning_sim.py) keeps its claims on a small run."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "active_learning_sim.py"


def test_simulation_shows_calibration_threshold_and_ranking_gains():
    spec = importlib.util.spec_from_file_location("active_learning_sim", SCRIPT)
    sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sim)
    result = sim.run(n_images=240, seed=1)
    assert result["ece"]["fitted"] < result["ece"]["heuristic"] / 2
    assert result["learned_thresholds"]["rivet"] > sim.DEFAULT_THRESHOLD, "rivet's confident false positives"
    f1 = lambda p, r: 2 * p * r / (p + r)  # noqa: E731
    assert f1(*result["learned"]) >= f1(*result["default"]) - 0.01
    top = result["top_k"][0.2]
    assert top["heuristic"] > 1.3 * top["random"] and top["fitted"] > 1.3 * top["random"]
    overall = result["feedback_report"]["overall"]
    assert overall["predicted"] > 0 and overall["added"] > 0 and overall["deleted"] > 0
