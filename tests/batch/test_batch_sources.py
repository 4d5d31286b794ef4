"""Batch sources: folders, globs and manifests resolve to the same sorted, unique image keys."""

import json

import pytest

from batch_data import write_shape_images
from prelabel.batch.records import ImageItem
from prelabel.batch.sources import resolve_source
from prelabel.core.errors import PrelabelError


@pytest.fixture()
def folder(tmp_path):
    write_shape_images(tmp_path / "data", 4, size=(64, 48))
    (tmp_path / "data" / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_is_searched_recursively_for_images(folder):
    items = resolve_source(str(folder / "data"))
    assert [i.key for i in items] == ["img0001.png", "img0002.png", "nested/img0000.png", "nested/img0003.png"]
    assert all(i.is_local and i.task_id is None for i in items)


def test_glob_matches_files(folder):
    items = resolve_source(str(folder / "data" / "**" / "img000[03].png"))
    assert [i.uri for i in items] == [str(folder / "data" / "nested" / f"img000{n}.png") for n in (0, 3)]


def test_jsonl_and_csv_manifests_resolve_relative_paths_and_keep_urls(folder):
    lines = ["data/img0001.png", {"image": "https://example.com/a.jpg"}, {"path": "data/img0001.png"}]
    (folder / "m.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert resolve_source(str(folder / "m.jsonl")) == [
        ImageItem("data/img0001.png", str(folder / "data" / "img0001.png")),
        ImageItem("https://example.com/a.jpg", "https://example.com/a.jpg"),
    ]
    (folder / "m.csv").write_text("url,split\nhttps://example.com/b.png,train\ndata/img0002.png,val\n")
    items = resolve_source(str(folder / "m.csv"))
    assert [(i.key, i.is_local) for i in items] == [("data/img0002.png", True), ("https://example.com/b.png", False)]


def test_bad_sources_give_clear_errors(folder):
    with pytest.raises(PrelabelError, match="missing does not exist; pass a folder, a .jsonl/.csv manifest"):
        resolve_source(str(folder / "missing"))
    (folder / "bad.jsonl").write_text('"a.png"\n{oops\n')
    with pytest.raises(PrelabelError, match="bad.jsonl line 2 is not JSON"):
        resolve_source(str(folder / "bad.jsonl"))
    (folder / "empty").mkdir()
    with pytest.raises(PrelabelError, match="holds no images"):
        resolve_source(str(folder / "empty"))
