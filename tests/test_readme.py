"""The README a new user follows: how to run prelabel after `make`, what the setup costs, the offline demo."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tells_a_new_user_how_to_run_prelabel_and_what_it_costs():
    readme = README.read_text()
    assert ".venv/bin/prelabel" in readme and "source .venv/bin/activate" in readme
    assert "2.6 GB" in readme and "1.0 GB" in readme
    assert "PRELABEL_DETECTOR=random-tiny PRELABEL_SEGMENTER=random-tiny make demo" in readme


def test_readme_serve_section_gives_the_label_studio_settings_a_local_backend_needs():
    """tests/labelstudio/test_connect.py shows these settings, and only both, connect a plain Label Studio."""
    section = README.read_text().split("## Label Studio ML backend", 1)[1].split("\n## ", 1)[0]
    assert "ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false label-studio start" in section
    assert "prelabel serve --host 0.0.0.0 --port 9090" in section
    assert "prelabel connect --project 1 --url http://127.0.0.1:9090" in section
    assert "URL resolves to a reserved network address" in section
