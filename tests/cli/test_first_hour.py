"""What a new user trips over first (issue: the first hour): each item's one-line error or sane default."""

import argparse
import json
import socket

import numpy as np
import pytest
from PIL import Image

from prelabel import __version__
from prelabel.cli import build_parser, main
from prelabel.cli.common import HelpFormatter
from prelabel.core.errors import EXIT_CODES, ExitCode
from prelabel.settings import Settings

TINY = ["--detector", "random-tiny", "--segmenter", "random-tiny", "--device", "cpu"]


def errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def test_version_and_nested_help(capsys):
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.strip() == f"prelabel {__version__}"
    with pytest.raises(SystemExit) as cvat_help:
        main(["cvat", "--help"])
    assert cvat_help.value.code == 0 and "spec" in capsys.readouterr().out


def subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for inner, subsub in subcommands(sub):
                    yield f"{name} {inner}", subsub


def test_every_subcommand_has_a_description_and_every_option_help_and_its_default():
    commands = dict(subcommands(build_parser(Settings())))
    assert {"predict", "batch", "serve", "demo", "cvat", "cvat spec", "qa", "eval", "fit", "accept", "report",
            "rank", "bench"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description, name
        assert parser.formatter_class is HelpFormatter, name
        text = " ".join(parser.format_help().split())
        assert "(default: None)" not in text and "(default: False)" not in text and "(default: )" not in text, name
        assert " ".join(EXIT_CODES.split()) in text, f"prelabel {name} --help lists the exit codes"
        for action in parser._actions:
            assert (HelpFormatter(name)._get_help_string(action) or "").count("(default:") <= 1, (name, action.dest)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"prelabel {name} {'/'.join(action.option_strings) or action.dest} has no help"
    assert "(default: 0.35)" in " ".join(commands["predict"].format_help().split())
    assert "(default: 9090)" in " ".join(commands["serve"].format_help().split())
    assert "(default: 4.0)" in " ".join(commands["qa"].format_help().split())


def test_unknown_model_spec_fails_at_once(tmp_path, caplog, monkeypatch):
    import huggingface_hub

    from prelabel.models import registry

    def never(*args, **kwargs):
        raise AssertionError("a spec that cannot be a hub id must not reach the hub or from_pretrained")

    monkeypatch.setattr(huggingface_hub, "model_info", never)
    monkeypatch.setattr(registry.GroundingDinoForObjectDetection, "from_pretrained", never)
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--labels", "cat", "--detector", "foo", "--segmenter", "random-tiny"]) == 2
    (message,) = errors(caplog)
    assert "unknown detector 'foo'" in message and "random-tiny" in message


def test_hub_id_offline_and_not_cached_fails_at_once_with_the_offline_hint(tmp_path, caplog, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--labels", "cat", "--segmenter", "random-tiny",
                 "--detector", "someone/not-downloaded"]) == ExitCode.UNAVAILABLE
    (message,) = errors(caplog)
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in message and "hf download" in message


def test_serve_on_a_busy_port_says_so(caplog):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    (message,) = errors(caplog)
    assert f"127.0.0.1:{port}" in message and "already in use" in message and "--port" in message


def test_batch_counts_labeled_and_failed_images_and_exits_3(tmp_path, caplog):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    for name in ("a.png", "b.jpg", "c.png"):
        (tmp_path / name).write_bytes(b"not an image")
    caplog.set_level("INFO")
    assert main(["batch", str(tmp_path), "--labels", "cat", *TINY, "--out", str(tmp_path / "out")]) == ExitCode.SOME_FAILED
    assert "labeled 1 image(s), 3 unreadable" in caplog.text
    assert "3 of 4 image(s) could not be read" in caplog.text
    assert len((tmp_path / "out" / "errors.jsonl").read_text().splitlines()) == 3


def test_eval_prints_n_a_where_there_is_no_ground_truth_in_a_size_range(tmp_path, capsys):
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 200}],
           "categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 150, 150], "area": 22500,
                            "iscrowd": 0, "score": 0.9}]}
    (tmp_path / "gt.json").write_text(json.dumps(doc))
    assert main(["eval", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "gt.json"),
                 "--out", str(tmp_path / "eval.json")]) == 0
    table = capsys.readouterr().out
    assert "AP_small=n/a" in table and "AP_large=1.000" in table
    assert json.loads((tmp_path / "eval.json").read_text())["bbox"]["summary"]["AP_small"] is None


def test_qa_says_pair_counts_are_pairs(tmp_path, caplog):
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
           "categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"id": i, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600,
                            "iscrowd": 0} for i in (1, 2, 3)]}
    (tmp_path / "coco.json").write_text(json.dumps(doc))
    caplog.set_level("INFO")
    assert main(["qa", str(tmp_path / "coco.json")]) == ExitCode.SOME_FAILED
    assert "3 shapes: duplicate 3 pairs" in caplog.text


# Round 2 of the first hour.

def test_images_over_pillows_default_limit_follow_prelabel_max_pixels(tmp_path):
    from prelabel.core.images import ImageError, check_image_file, load_image_file

    big = tmp_path / "big.png"
    Image.new("1", (13_400, 13_400)).save(big)  # 179.6 MP: over Pillow's own 178,956,970-pixel default
    assert load_image_file(big, max_pixels=200_000_000).shape == (13_400, 13_400, 3)
    huge = tmp_path / "huge.png"
    Image.new("1", (20_000, 20_000)).save(huge)  # 400 MP: Pillow would refuse it as a decompression bomb
    check_image_file(huge, max_pixels=500_000_000)
    with pytest.raises(ImageError, match=r"20000x20000 = 400,000,000 pixels, over the limit of 100,000,000 "
                                         r"\(raise PRELABEL_MAX_PIXELS"):
        check_image_file(huge, max_pixels=100_000_000)


def test_a_batch_that_failed_loading_models_does_not_block_its_retry(tmp_path, caplog, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    (tmp_path / "images").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
        tmp_path / "images" / "a.png")
    argv = ["batch", str(tmp_path / "images"), "--labels", "cat", "--out", str(tmp_path / "out")]
    assert main([*argv, "--detector", "someone/not-downloaded", "--segmenter", "random-tiny"]) == \
        ExitCode.UNAVAILABLE
    assert (tmp_path / "out" / "checkpoint.jsonl").exists(), "the failed run left a checkpoint without images"
    caplog.clear()
    assert main([*argv, *TINY]) == ExitCode.OK, errors(caplog)
    assert "--restart" not in caplog.text


@pytest.mark.parametrize("text, fragment", [
    ("cup=", "an empty prompt in 'cup='"),
    ("cup=coffee cup||mug", "an empty prompt in 'cup=coffee cup||mug'"),
    ("cup=coffee cup|@0.2", "an empty prompt"),
])
def test_label_typos_with_empty_prompts_are_errors(text, fragment):
    from prelabel.core.labels import LabelError, parse_labels

    with pytest.raises(LabelError, match=fragment.replace("|", r"\|")):
        parse_labels(text)


def test_a_label_with_a_semicolon_warns_about_the_comma_separator(caplog):
    from prelabel.core.labels import parse_labels

    assert [label.name for label in parse_labels("cat;dog")] == ["cat;dog"]
    assert "labels are separated by ','" in caplog.text


def test_exit_codes_are_one_table_in_the_readme_and_in_help(capsys):
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    for code in ExitCode:
        assert f"| {int(code)} |" in readme, f"README's exit code table lacks {int(code)}"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert " ".join(EXIT_CODES.split()) in " ".join(capsys.readouterr().out.split())


def test_exit_codes_of_input_errors_are_the_same_in_predict_and_batch(tmp_path):
    missing = str(tmp_path / "missing.png")
    assert main(["predict", missing, "--labels", "cat", *TINY]) == ExitCode.USAGE
    assert main(["batch", missing, "--labels", "cat", *TINY, "--out", str(tmp_path / "out")]) == ExitCode.USAGE


def test_auto_knows_a_sam_hub_id_that_is_not_downloaded_is_a_sam_v1():
    from prelabel.models.auto import choose, is_sam_v1

    assert is_sam_v1("facebook/sam-vit-base") and is_sam_v1("facebook/sam-vit-huge")
    assert not is_sam_v1("facebook/sam2.1-hiera-tiny")
    assert "measured for SAM (v1) encoders only" not in choose("cpu", "facebook/sam-vit-base", openvino=True).reason
