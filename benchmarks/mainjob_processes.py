"""The main job as a user runs it (not a test): whole processes, one after the other, on the same weights and images.

1. the plain transformers pipeline (the model cards' code: `prelabel.bench.naive.NaiveReference`, PyTorch fp32
   eager, one SAM encoder call and one batched decoder call per image) in a fresh process;
2. `prelabel batch` with default settings and an EMPTY runtime cache (a first run right after install);
3. `prelabel warmup --images` (not timed), then `prelabel batch` again with the cache filled.

Each process's wall time includes loading the models. Images: the bundled photos and their mirror images (distinct
pixels, so no embedding is reused), ``--images`` of them; random-full weights find ~100 regions on each.

    ../shared/tools/memcap 16G -- .venv/bin/python benchmarks/mainjob_processes.py [--images 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from PIL import Image, ImageOps

LABELS = "cat,person,cup=coffee cup|mug,rocket"
MODELS = ["--detector", "random-full", "--segmenter", "random-full"]
NAIVE = """
import json, sys, time
from pathlib import Path
from transformers import SamProcessor
from prelabel.bench.naive import NaiveReference
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings
settings = Settings(detector="random-full", segmenter="random-full", device="cpu", dtype="fp32", sam_runtime="torch",
                    detector_runtime="torch")
labeler = build_labeler(settings)
det, seg = labeler.detector, labeler.segmenter
naive = NaiveReference(det.model, det.processor, seg.model, SamProcessor(seg.image_processor), settings.box_threshold,
                       settings.text_threshold, settings.max_detections)
names = [label.split("=")[0] for label in sys.argv[2].split(",")]
counts = [len(naive.prelabel_batched(path.read_bytes(), names)) for path in sorted(Path(sys.argv[1]).iterdir())]
print(json.dumps({"regions": counts}))
"""


def write_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    assets = resources.files("prelabel") / "assets"
    photos = sorted(p.name for p in assets.iterdir() if p.name.endswith(".jpg"))
    for i in range(count):
        with Image.open(assets / photos[i % len(photos)]) as photo:
            image = photo.convert("RGB")
        for turn in range(i // len(photos)):  # mirrored, then flipped: distinct pixels for every image
            image = ImageOps.mirror(image) if turn % 2 == 0 else ImageOps.flip(image)
        image.save(folder / f"{i:02d}.jpg", quality=95)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed ({done.returncode}): {done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def batch(images: Path, out: Path, env: dict[str, str]) -> tuple[float, list[int]]:
    seconds, _ = timed([sys.executable, "-m", "prelabel.cli", "batch", str(images), "--labels", LABELS, *MODELS,
                        "--out", str(out), "--format", "coco"], env)
    coco = json.loads((out / "coco.json").read_text())
    counts = [sum(a["image_id"] == image["id"] for a in coco["annotations"]) for image in coco["images"]]
    return seconds, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/prelabel-mainjob"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    images = args.workdir / "images"
    write_images(images, args.images)
    env = {**os.environ, "PRELABEL_RUNTIME_CACHE": str(args.workdir / "runtime-cache"),
           "PRELABEL_EMBEDDING_STORE": "off"}
    report: dict[str, object] = {"images": args.images}
    naive_s, out = timed([sys.executable, "-c", NAIVE, str(images), LABELS], env)
    report["naive"] = {"seconds": round(naive_s, 1), "regions": json.loads(out.strip().splitlines()[-1])["regions"]}
    first_s, first_regions = batch(images, args.workdir / "first", env)
    report["first_run"] = {"seconds": round(first_s, 1), "regions": first_regions,
                           "speedup": round(naive_s / first_s, 2)}
    warmup_s, warmup_log = timed([sys.executable, "-m", "prelabel.cli", "warmup", *MODELS, "--labels", LABELS,
                                  "--images", str(images)], env)
    report["warmup"] = {"seconds": round(warmup_s, 1), "converted": [line for line in warmup_log.splitlines()
                                                                     if "converted" in line or "cached" in line]}
    warm_s, warm_regions = batch(images, args.workdir / "warm", env)
    report["warm"] = {"seconds": round(warm_s, 1), "regions": warm_regions, "speedup": round(naive_s / warm_s, 2)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
