import pytest

from prelabel.core.errors import PrelabelError
from prelabel.settings import Settings


def test_env_overrides_config_file_overrides_defaults(tmp_path):
    config = tmp_path / "prelabel.yaml"
    config.write_text("detector: /models/gdino\nbox_threshold: 0.4\nlabels:\n  cup: [coffee cup, mug]\n  cat: cat\n")
    settings = Settings.load(config, env={"PRELABEL_BOX_THRESHOLD": "0.5", "LABEL_STUDIO_API_KEY": "secret"})
    assert settings.detector == "/models/gdino" and settings.box_threshold == 0.5
    assert settings.prompt_map()["cup"].prompts == ("coffee cup", "mug")
    assert settings.redacted()["label_studio_api_key"] == "***"
    assert Settings.load(env={}).box_threshold == 0.35


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(PrelabelError, match="BOX_THRESHOLD\\) must be a number"):
        Settings.load(env={"PRELABEL_BOX_THRESHOLD": "high"})
    bad = tmp_path / "bad.toml"
    bad.write_text('detectr = "x"\n')
    with pytest.raises(PrelabelError, match="unknown settings: detectr"):
        Settings.load(bad, env={})
    with pytest.raises(PrelabelError, match="does not exist"):
        Settings.load(tmp_path / "missing.yaml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text('detector = "x\n')
    with pytest.raises(PrelabelError, match="broken.toml is not valid TOML"):
        Settings.load(broken, env={})
    (tmp_path / "broken.yaml").write_text("detector: [x\n")
    with pytest.raises(PrelabelError, match="broken.yaml is not valid YAML"):
        Settings.load(tmp_path / "broken.yaml", env={})
    with pytest.raises(PrelabelError, match="CACHE_MB\\) must be a whole number"):
        Settings.load(env={"PRELABEL_CACHE_MB": "2.5"})
    with pytest.raises(PrelabelError, match="must be true or false"):
        Settings.load(env={"PRELABEL_ALLOW_PRIVATE_NETWORKS": "maybe"})
