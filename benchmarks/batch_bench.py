"""Benchmark of `prelabel batch` (not a test): local vs Ray engine images/s side by side, and a kill -9
halfway through followed by a resume, compared byte for byte with the clean run.

    .venv/bin/python benchmarks/batch_bench.py [--images 200] [--workdir /tmp/prelabel-bench]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' image generator
from batch_data import write_shape_images  # noqa: E402

OUTPUTS = ("coco.json", "coco_polygons.json", "labelstudio_tasks.json", "errors.jsonl", "yolo/data.yaml")
RATE = re.compile(r"labeled (\d+) image\(s\) in ([\d.]+) s \(([\d.]+) images/s")


def batch_command(images: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "prelabel.cli", "batch", str(images), "--labels", "box=red box,disc=green circle",
            "--detector", "random-tiny", "--segmenter", "random-tiny", "--device", "cpu", "--out", str(out), *extra]


def timed_run(command: list[str]) -> dict[str, float]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    match = RATE.search(result.stderr)
    assert match, result.stderr
    return {"images": int(match[1]), "label_seconds": float(match[2]), "images_per_s": float(match[3]),
            "wall_seconds": round(time.perf_counter() - started, 1)}


def same_outputs(a: Path, b: Path) -> bool:
    labels = sorted(p.relative_to(a) for p in (a / "yolo" / "labels").rglob("*.txt"))
    other = sorted(p.relative_to(b) for p in (b / "yolo" / "labels").rglob("*.txt"))
    files = [*OUTPUTS, *labels]
    return labels == other and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/prelabel-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    images = args.workdir / "images"
    write_shape_images(images, args.images)
    report = {"images": args.images, "size": "320x240"}
    report["local"] = timed_run(batch_command(images, args.workdir / "local"))
    report["local_1_thread"] = timed_run(batch_command(images, args.workdir / "local1", "--threads", "1"))
    report["ray_2_actors"] = timed_run(batch_command(images, args.workdir / "ray", "--engine", "ray",
                                                     "--ray-actors", "2", "--ray-local-cpus", "2"))
    report["ray_equals_local"] = same_outputs(args.workdir / "local", args.workdir / "ray")

    killed = args.workdir / "killed"
    process = subprocess.Popen(batch_command(images, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.jsonl"
    while not (checkpoint.exists() and checkpoint.read_bytes().count(b"\n") > args.images // 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    report["killed_after"] = checkpoint.read_bytes().count(b"\n") - 1
    report["resume"] = timed_run(batch_command(images, killed))
    report["resumed_equals_clean"] = same_outputs(args.workdir / "local", killed)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
