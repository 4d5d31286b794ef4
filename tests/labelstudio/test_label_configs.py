"""The one labeling-config builder: every config prelabel writes escapes label names and reads back as written."""

import pytest

from prelabel.core.labels import LabelPrompt
from prelabel.labelstudio.config import image_config, parse_label_config, video_config
from prelabel.labelstudio.tasks import TaskConfig

NAMES = ('a"<b&', "it's", "cat")


@pytest.mark.parametrize("xml", [
    image_config(NAMES),
    image_config(NAMES, polygons=True, smart_keypoints=True),
    video_config(NAMES),
    TaskConfig.for_images([LabelPrompt(name, ()) for name in NAMES], with_masks=True).xml,  # prelabel batch's default
], ids=["boxes", "boxes-polygons-keypoints", "video", "batch-default"])
def test_label_names_with_markup_characters_read_back_as_written(xml):
    config = parse_label_config(xml)
    assert tuple(prompt.name for prompt in config.prompts) == NAMES
    assert all(control.labels == NAMES for control in config.controls)


def test_the_image_config_names_its_controls():
    config = parse_label_config(image_config(["cat"], polygons=True))
    assert [(c.name, c.tag) for c in config.controls] == [("label", "RectangleLabels"), ("polygon", "PolygonLabels")]
    assert parse_label_config(video_config(["cat"], fps=30.0)).framerate == 30.0
