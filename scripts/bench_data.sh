#!/usr/bin/env bash
# Data-pipeline benchmark: images per second per core for JPEG decode + the DeiT train transform
# and the eval transform, thinkingvit (C++: OpenCV/libjpeg-turbo decode, PIL-exact resampling)
# against torchvision + PIL on the same generated folder of ImageNet-sized JPEGs (500x375).
#
#   scripts/bench_data.sh [IMAGES=200] [FOLDER=/tmp/thinkingvit-bench-jpegs]
#
# Needs python3-torchvision and python3-pil (installed when missing) and a built build/thinkingvit.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
folder=${2:-/tmp/thinkingvit-bench-jpegs}
py=/usr/bin/python3
if ! $py -c 'import torchvision, PIL' 2>/dev/null; then
  echo "bench_data: installing python3-torchvision python3-pil" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-torchvision python3-pil >&2
fi
if [[ ! -d $folder ]] || (( $(find "$folder" -name '*.jpg' | wc -l) < n )); then
  echo "bench_data: writing $n JPEGs (500x375, quality 90) to $folder" >&2
  rm -rf "$folder"
  $py - "$folder" "$n" <<'PY'
import os, sys
import numpy as np
from PIL import Image
root, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
for i in range(n):
    d = os.path.join(root, f"class_{i % 10:02d}")
    os.makedirs(d, exist_ok=True)
    # Smooth colour fields plus noise: compresses like a photograph, not like flat colour.
    y, x = np.mgrid[0:375, 0:500].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(x / (20 + 10 * c + i % 7) + y / (30 + i % 11) + c)
                    for c in range(3)], -1) + rng.normal(0, 12, (375, 500, 3))
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(os.path.join(d, f"{i:05d}.jpg"), quality=90)
PY
fi
export OMP_NUM_THREADS=1
echo "== thinkingvit (C++), 1 thread"
build/thinkingvit data-bench --root "$folder" --images "$n" --format csv | tee /tmp/bench_data_cpp.csv
echo "== torchvision + PIL (Python), 1 thread"
$py scripts/bench_data.py "$folder" --images "$n" | tee /tmp/bench_data_py.csv
$py - <<'PY'
import csv
cpp = {r["pipeline"].split(":")[0] + (" reduced" if "reduced" in r["decode"] else "") + (" region" if "region" in r["decode"] else ""): float(r["img_per_s_per_core"])
       for r in csv.DictReader(open("/tmp/bench_data_cpp.csv"))}
py = {r["pipeline"].split(":")[0]: float(r["img_per_s_per_core"]) for r in csv.DictReader(open("/tmp/bench_data_py.csv"))}
print("\n| pipeline | thinkingvit img/s/core | torchvision img/s/core | speed-up |\n|---|---:|---:|---:|")
for key, ref in [("decode only", "decode only"), ("train", "train"), ("train region", "train"), ("eval", "eval"), ("eval reduced", "eval")]:
    if key in cpp and ref in py:
        print(f"| {key} | {cpp[key]:.1f} | {py[ref]:.1f} | {cpp[key] / py[ref]:.2f}x |")
PY
