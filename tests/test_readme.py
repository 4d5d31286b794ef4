"""The README a new user follows: how to run prelabel after `make`, what the setup costs, the offline demo."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tells_a_new_user_how_to_run_prelabel_and_what_it_costs():
    readme = README.read_text()
    assert ".venv/bin/prelabel" in readme and "source .venv/bin/activate" in readme
    assert "2.6 GB" in readme and "1.0 GB" in readme
    assert "PRELABEL_DETECTOR=random-tiny PRELABEL_SEGMENTER=random-tiny make demo" in readme
