#!/usr/bin/env bash
# The bench's main-job and click sections on CUDA, fp32 and fp16, in one command (< 8 minutes on one GPU),
# written to bench-results/gpu/table.md. Needs a CUDA build of torch:
#   pip install -e ".[bench]" -c requirements/gpu.txt
# Usage: benchmarks/gpu_bench.sh [OUT_DIR]   (PYTHON=... to pick the interpreter)
# Smoke test of the script itself on a CPU: DEVICE=cpu EXTRA=--quick benchmarks/gpu_bench.sh /tmp/gpu-smoke
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench-results/gpu}"
DEVICE="${DEVICE:-cuda}"
EXTRA="${EXTRA:-}"
PY="${PYTHON:-python}"
export PYTHONPATH="${PYTHONPATH:-}${PYTHONPATH:+:}$PWD/backend"
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "ERROR no CUDA device for torch $("$PY" -c 'import torch; print(torch.__version__)'):" \
       'install a CUDA build (pip install -e ".[bench]" -c requirements/gpu.txt) on a GPU machine' >&2
  exit 2
fi
"$PY" -c 'import torch; print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")'
# fp32: the naive reference's own precision, plus the half section (fp16 speed and accuracy vs fp32).
timeout 300 "$PY" -m prelabel.cli bench --device "$DEVICE" --dtype fp32 --repeats 3 $EXTRA \
  --sections mainjob,click,decoder,half,floor --out "$OUT/fp32"
# fp16: the fast path (Grounding DINO keeps its deformable attention in fp32).
timeout 180 "$PY" -m prelabel.cli bench --device "$DEVICE" --dtype fp16 --repeats 3 $EXTRA \
  --sections mainjob,click,floor --out "$OUT/fp16"
"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {name: json.loads((out / f"{name}.json").read_text()) for name in ("fp32", "fp16")}
lines = ["| run | section | metric | value | target | result |", "|---|---|---|---|---|---|"]
for name, doc in runs.items():
    for r in doc["rows"]:
        target = f"{r['target'][0]} {r['target'][1]}" if r["target"] else ""
        verdict = {None: "", True: "MET", False: "MISSED"}[r["met"]]
        lines.append(f"| {name} | {r['section']} | {r['metric']} | {r['value']:.4g} {r['unit']} | {target} | {verdict} |")
naive32 = runs["fp32"]["details"]["mainjob"]["seconds"]["naive"]
fast16 = runs["fp16"]["details"]["mainjob"]["seconds"]["prelabel"]
med = lambda v: sorted(v)[len(v) // 2]
ratio = med(naive32) / med(fast16)
lines.append(f"| fp16 vs fp32 naive | mainjob | main job fp16 vs naive fp32 (two runs, not interleaved) | "
             f"{ratio:.3g} x | >= 3 | {'MET' if ratio >= 3 else 'MISSED'} |")
env = runs["fp32"]["environment"]
text = f"GPU bench, {env['date']}, torch {env['torch']}, device {env['device']}\n\n" + "\n".join(lines) + "\n"
(out / "table.md").write_text(text)
print(text)
PYEOF
