#!/usr/bin/env bash
# This project against the PyTorch implementations of ThinkingViT 3H->6H, side by side: the
# authors' released code (scripts/bench_released.py, given a checkout), a strong eager
# implementation (scripts/bench_torch.py) and, with --compile, its torch.compile. The runs are
# interleaved (ours, released, eager, compiled, ours, ...) for PAIRS rounds, and every row (each
# stage alone, elastic at tau, the training step) gets its images/s per implementation (median
# over rounds) and the ratio ours / theirs: the median of the per-round ratios with its min..max.
# --graphs adds ours with CUDA graphs ("graphs") to every round, with its own ratios.
# --max-seconds S starts no round that would end after S seconds (judged by the longest round so
# far) and summarises the rounds done. --model swin-t|swin-s|swin-b compares ThinkingViT on that
# Swin instead (this project's preset thinkingvit_swin_*, the released swin_transformer.py; there
# is no eager baseline for Swin, so only ours and the released code).
#
#   scripts/bench_compare.sh [--released PATH] [--compile] [--graphs] [--pairs 5] [--batch 16]
#       [--threads 1] [--precision fp32|bf16] [--taus 0] [--device cpu] [--reps 10] [--warmup 2]
#       [--max-seconds S] [--model vit|swin-t|swin-s|swin-b]
#
# THINKINGVIT_BIN: the binary (default build/thinkingvit); OURS_FLAGS: extra flags for its bench
# (e.g. "--cuda-graphs" on a GPU).
#
# Needs a built thinkingvit and a Python with torch ($PYTHON; default: python3 when it
# imports torch, else the pinned torch of scripts/setup.sh). The released code also needs what
# its vendored timm imports (torchvision, pillow, pyyaml, safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
released="" model=vit compile=0 graphs=0 max_seconds=0 pairs=5 batch=16 threads=1 precision=fp32 taus=0 device=cpu reps=10 warmup=2
while (($#)); do
  case $1 in
    --released) released=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --compile) compile=1; shift ;;
    --graphs) graphs=1; shift ;;
    --max-seconds) max_seconds=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --taus) taus=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    *) echo "bench_compare: unknown option '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
[[ $pairs =~ ^[1-9][0-9]*$ ]] || { echo "bench_compare: --pairs expects a count >= 1, found '$pairs'" >&2; exit 2; }
[[ $max_seconds =~ ^(0|[1-9][0-9]*)$ ]] || { echo "bench_compare: --max-seconds expects whole seconds (0: no limit), found '$max_seconds'" >&2; exit 2; }
case $model in
  vit) preset=thinkingvit_3h_6h title="ThinkingViT 3H->6H" released_flags=() ;;
  swin-t) preset=thinkingvit_swin_t title="ThinkingViT Swin-T" released_flags=(--swin swin_tiny_patch4_window7_224) ;;
  swin-s) preset=thinkingvit_swin_s title="ThinkingViT Swin-S" released_flags=(--swin swin_small_patch4_window7_224) ;;
  swin-b) preset=thinkingvit_swin_b title="ThinkingViT Swin-B" released_flags=(--swin swin_base_patch4_window7_224) ;;
  *) echo "bench_compare: --model expects vit, swin-t, swin-s or swin-b, found '$model'" >&2; exit 2 ;;
esac
if [[ $model != vit ]]; then
  [[ -n $released ]] || { echo "bench_compare: --model $model compares with the released code only: give --released PATH" >&2; exit 2; }
  ((compile == 0)) || { echo "bench_compare: --compile: there is no eager Swin to compile (--model $model)" >&2; exit 2; }
fi
[[ -z $released || -d $released ]] || { echo "bench_compare: --released '$released' is not a folder" >&2; exit 2; }
bin=${THINKINGVIT_BIN:-build/thinkingvit}
read -r -a ours_flags <<< "${OURS_FLAGS:-}"
[[ -x $bin ]] || { echo "bench_compare: $bin not found; run scripts/setup.sh" >&2; exit 2; }
py=${PYTHON:-python3}
if ! "$py" -c 'import torch' 2>/dev/null; then
  py=$(ls -d "${THINKINGVIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thinkingvit}"/torch-*/bin/python 2>/dev/null | tail -1)
  [[ -n $py ]] || { echo "bench_compare: no Python with torch (set PYTHON)" >&2; exit 2; }
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMP_NUM_THREADS=$threads
common=(--batch "$batch" --threads "$threads" --precision "$precision" --taus "$taus" --device "$device"
        --reps "$reps" --warmup "$warmup" --train)
ours=("$bin" bench --preset "$preset" --batch-sizes "$batch" --threads "$threads"
      --precision "$precision" --taus "$taus" --device "$device" --reps "$reps" --warmup "$warmup"
      --train "${ours_flags[@]}" --format csv)
start=$SECONDS longest=0 done_rounds=0
for ((r = 0; r < pairs; r++)); do
  if ((max_seconds > 0 && r > 0 && SECONDS - start + longest > max_seconds)); then
    echo "bench_compare: stopping after $r of $pairs rounds (--max-seconds $max_seconds)" >&2
    break
  fi
  echo "bench_compare: round $((r + 1)) of $pairs" >&2
  round_start=$SECONDS
  "${ours[@]}" > "$out/ours.$r.csv" 2> "$out/ours.log"
  ((graphs)) && "${ours[@]}" --cuda-graphs > "$out/graphs.$r.csv" 2> "$out/graphs.log"
  [[ -n $released ]] && "$py" scripts/bench_released.py "$released" "${released_flags[@]}" "${common[@]}" > "$out/released.$r.csv"
  [[ $model == vit ]] && "$py" scripts/bench_torch.py "${common[@]}" > "$out/eager.$r.csv"
  ((compile)) && "$py" scripts/bench_torch.py --compile "${common[@]}" > "$out/compiled.$r.csv"
  longest=$((SECONDS - round_start > longest ? SECONDS - round_start : longest))
  done_rounds=$((r + 1))
done
"$py" - "$out" "$done_rounds" "$title" <<'PY'
import csv, glob, os, statistics, sys
out, pairs, title = sys.argv[1], int(sys.argv[2]), sys.argv[3]
impls = [i for i in ("ours", "graphs", "released", "eager", "compiled")
         if glob.glob(f"{out}/{i}.*.csv")]
mine = [i for i in ("ours", "graphs") if i in impls]
ratios_of = [(m, i) for m in mine for i in impls if i != m and not (m == "ours" and i == "graphs")]

def key(row):
    tau = row["tau"] if row["mode"] == "elastic" else "-"
    if tau != "-":
        tau = f"{float(tau):g}"
    return (row["mode"], row["stage"], tau)

rate = {}  # (impl, key) -> [img/s per round]
info = ""
for impl in impls:
    for r in range(pairs):
        with open(f"{out}/{impl}.{r}.csv") as f:
            for row in csv.DictReader(f):
                rate.setdefault((impl, key(row)), []).append(float(row["img_per_s"]))
                if impl == "ours":
                    info = f"{row['device']}, {row['threads']} thread(s), batch {row['batch']}, {row['precision']}"
keys = []
for impl in impls:
    for (i, k) in rate:
        if i == impl and k not in keys:
            keys.append(k)
print(f"{title}, {info}; {pairs} interleaved rounds; img/s = median over rounds")
head = ["row"] + [f"{i} img/s" for i in impls] + [f"{m}/{i} (min..max)" for m, i in ratios_of]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for k in keys:
    name = k[0] + (f" {k[1]}" if k[1] != "-" else "") + (f" tau {k[2]}" if k[2] != "-" else "")
    cells = [name]
    for i in impls:
        v = rate.get((i, k))
        cells.append(f"{statistics.median(v):.2f}" if v else "-")
    for m, i in ratios_of:
        a, b = rate.get((m, k)), rate.get((i, k))
        if not a or not b:
            cells.append("-")
            continue
        ratios = [x / y for x, y in zip(a, b)]
        cells.append(f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f})")
    print("| " + " | ".join(cells) + " |")
PY
