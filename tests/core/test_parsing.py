"""The one owner of a parser's ValueError: values of another kind are None, never an exception."""

from datetime import datetime

import pytest

from prelabel.core.parsing import finite, integer, parsed


@pytest.mark.parametrize(("value", "expected"), [("0.5", 0.5), (3, 3.0), (" 2 ", 2.0), ("nan", None), ("inf", None),
                                                 ("high", None), (None, None), ([1], None), (True, None)])
def test_finite(value, expected):
    assert finite(value) == expected


@pytest.mark.parametrize(("value", "expected"), [("12", 12), (12, 12), (12.0, 12), (12.5, None), ("1.5", None),
                                                 (None, None), (False, None), (float("inf"), None)])
def test_integer(value, expected):
    assert integer(value) == expected


def test_parsed_takes_any_one_value_parser():
    assert parsed(datetime.fromisoformat, "2026-12-07T06:00:00") == datetime(2026, 12, 7, 6)
    assert parsed(datetime.fromisoformat, "yesterday") is None and parsed(datetime.fromisoformat, 5) is None


def test_a_bug_inside_a_parser_is_not_swallowed():
    def broken(_value):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        parsed(broken, "1")
