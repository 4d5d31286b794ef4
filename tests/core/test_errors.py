"""One error base: every exception class prelabel defines is a PrelabelError, mapped alike by CLI and HTTP."""

import importlib
import inspect
import pkgutil

import prelabel
from prelabel.core.errors import BadRequest, ExitCode, PrelabelError, Unavailable


def prelabel_exceptions():
    for module in pkgutil.walk_packages(prelabel.__path__, "prelabel."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        for _, value in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.name:
                yield value


def test_every_exception_prelabel_defines_derives_from_the_one_base():
    found = set(prelabel_exceptions())
    assert len(found) >= 12, sorted(c.__name__ for c in found)
    assert {c.__name__ for c in found if not issubclass(c, PrelabelError)} == set()
    assert not issubclass(PrelabelError, ValueError), "a ValueError from a bug must never pass for bad input"
    assert issubclass(Unavailable, PrelabelError)
    assert issubclass(BadRequest, PrelabelError)


def test_the_cli_maps_a_device_that_is_not_here_to_one_line_and_exit_4(tmp_path, caplog):
    from PIL import Image

    from prelabel.cli import main

    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", str(image), "--labels", "cat", "--detector", "random-tiny", "--segmenter", "random-tiny",
                 "--device", "cuda"]) == ExitCode.UNAVAILABLE
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "device 'cuda' is not available" in record.getMessage() and "available: cpu" in record.getMessage()
    assert record.exc_info is None
