"""Streamed JSON has the bytes of json.dumps(indent=1): outputs written an image at a time are today's files."""

import json

import pytest

from prelabel.formats.json_stream import write_json

DOCUMENTS = [
    {"info": {}, "licenses": [], "images": [{"id": 1, "file_name": "ü.jpg", "width": 3, "height": 2}],
     "annotations": [{"bbox": [1.5, 2.0, 3, 4], "segmentation": {"size": [2, 3], "counts": "a1b"}, "score": 0.25},
                     {"bbox": [0, 0, 1, 1], "segmentation": [[1, 2, 3, 4, 5, 6]], "nested": [[], {}, [[]]]}],
     "categories": [{"id": 1, "name": "a \"quoted\" label", "supercategory": ""}]},
    [], {}, [{"data": {"image": "x"}, "predictions": [{"result": [], "score": 1e-7, "flag": True, "none": None}]}],
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_streamed_json_is_what_json_dumps_writes(tmp_path, document):
    path = write_json(tmp_path / "out.json", document)
    assert path.read_text(encoding="utf-8") == json.dumps(document, indent=1) + "\n"
    lazy = {key: iter(value) if isinstance(value, list) else value for key, value in document.items()} \
        if isinstance(document, dict) else iter(document)
    assert write_json(tmp_path / "lazy.json", lazy).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
