"""The --labels grammar: a threshold after the name or after the prompts, and clear errors otherwise."""

import pytest

from prelabel.core.labels import LabelError, LabelPrompt, box_cuts, parse_labels


def test_a_threshold_may_follow_the_name_or_the_prompts():
    expected = [LabelPrompt("cup", ("coffee cup", "mug"), 0.2)]
    assert parse_labels("cup@0.2=coffee cup|mug") == expected
    assert parse_labels("cup=coffee cup|mug@0.2") == expected
    assert parse_labels(" cat , dog@0.5 ") == [LabelPrompt("cat", ("cat",)), LabelPrompt("dog", ("dog",), 0.5)]


@pytest.mark.parametrize("text, message", [
    ("cat@abc", "label 'cat': threshold 'abc' is not a number"),
    ("cat@1.5", "label 'cat': threshold 1.5 must lie in [0, 1]"),
    ("cup@0.2=coffee cup|mug@0.3", "label 'cup' has two thresholds"),
    ("cup=coffee@home|mug", "label 'cup': cannot parse"),
    ("cup=a=b", "label 'cup': cannot parse"),
    ("=mug", "a label name must not be empty"),
    ("", "no labels given"),
    ("cat,cat", "duplicate label names: cat"),
])
def test_what_the_grammar_cannot_parse_is_an_error_naming_the_label(text, message):
    with pytest.raises(LabelError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_labels(text)


def test_a_label_is_cut_at_its_own_threshold_or_the_default():
    labels = parse_labels("rivet@0.3,crack,scratch@0")
    assert box_cuts(labels, 0.35).tolist() == [0.3, 0.35, 0.0]
    assert box_cuts([], 0.35).shape == (0,)
