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
# --peers compares with CPU inference runtimes instead of PyTorch (scripts/bench_peers.py):
# OpenVINO and ONNX Runtime on this project's 3H->6H exported to ONNX (opset 17: each stage with
# a dynamic batch, and the all-stage graph), on the same weights (--weights W, default random),
# interleaved (ours, OpenVINO, ORT, ours, ...) at the same batch, threads and precision (ORT has
# no bf16 CPU path: n/a). Rows: each stage alone, tau 0 (the peers: the all-stage graph) and
# elastic where the --stop-shares (0.5,0.875) stop at stage 0, set as `bench --stop-shares` sets
# them; the peers glue their stage graphs with numpy, regrouping the undecided images into full
# stage-1 batches as bench does (--per-batch adds rows where each batch's undecided images run
# alone; OpenVINO compiled at each exact reduced batch). --stream N: batches per call (16, as
# bench). Ratio: ours / the faster peer. It prints each peer's configuration as compiled, the
# kernels it chose, and its logits against `thinkingvit infer` on the same images (max
# |peer - ours| / max |ours|; tolerance 1e-3 in fp32, 5e-2 in bf16; exit status 1 past it).
# openvino, onnxruntime and onnx (pinned: PEERS_PACKAGES) are installed once from PyPI into a
# venv of their own, $PEERS_VENV (default $THINKINGVIT_CACHE/peers-venv, i.e.
# ~/.cache/thinkingvit/peers-venv), made from the torch Python's interpreter: the export runs on
# the torch Python with that venv on its path.
#
#   scripts/bench_compare.sh [--released PATH] [--compile] [--graphs] [--pairs 5] [--batch 16]
#       [--threads 1] [--precision fp32|bf16] [--taus 0] [--device cpu] [--reps 10] [--warmup 2]
#       [--max-seconds S] [--model vit|swin-t|swin-s|swin-b]
#   scripts/bench_compare.sh --peers [--stop-shares 0.5,0.875] [--per-batch] [--stream 16]
#       [--weights W.safetensors] [--pairs 5] [--batch 16] [--threads 1] [--precision fp32|bf16]
#       [--taus 0] [--reps 10] [--warmup 2] [--max-seconds S]
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
peers=0 stop_shares=0.5,0.875 per_batch=0 stream=16 weights=""
while (($#)); do
  case $1 in
    --peers) peers=1; shift ;;
    --stop-shares) stop_shares=$2; shift 2 ;;
    --per-batch) per_batch=1; shift ;;
    --stream) stream=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
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
# Whether round r (0-based) may start: under --max-seconds, only if the longest round so far still
# fits (start, longest: set by the round loop); says which round starts, or why none does.
next_round_fits() {
  if ((max_seconds > 0 && $1 > 0 && SECONDS - start + longest > max_seconds)); then
    echo "bench_compare: stopping after $1 of $pairs rounds (--max-seconds $max_seconds)" >&2
    return 1
  fi
  echo "bench_compare: round $(($1 + 1)) of $pairs" >&2
}
if ((peers)); then
  [[ -z $released && $compile == 0 && $graphs == 0 && $model == vit && $device == cpu ]] ||
    { echo "bench_compare: --peers compares ThinkingViT 3H->6H on the CPU only (no --released, --compile, --graphs, --model, --device)" >&2; exit 2; }
  [[ $stream =~ ^[1-9][0-9]*$ ]] || { echo "bench_compare: --stream expects a count >= 1, found '$stream'" >&2; exit 2; }
  [[ -z $weights || -f $weights ]] || { echo "bench_compare: --weights '$weights' is not a file" >&2; exit 2; }
elif [[ $stop_shares != 0.5,0.875 || $per_batch == 1 || $stream != 16 || -n $weights ]]; then
  echo "bench_compare: --stop-shares, --per-batch, --stream and --weights go with --peers" >&2; exit 2
fi
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
if ((peers)); then
  peers_venv=${PEERS_VENV:-${THINKINGVIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thinkingvit}/peers-venv}
  read -r -a peer_pkgs <<< "${PEERS_PACKAGES:-openvino==2026.4.1 onnxruntime==1.32.0 onnx==1.23.2}"
  peers_py=$peers_venv/bin/python
  # Imports the runtimes, at the pinned versions?
  peers_ok() {
    "$peers_py" - "${peer_pkgs[@]}" <<'PY' 2>/dev/null
import importlib.metadata as md, sys
import numpy, onnx, onnxruntime, openvino  # noqa: F401
sys.exit(any(v and md.version(n) != v for n, _, v in (s.partition("==") for s in sys.argv[1:])))
PY
  }
  if [[ ! -f $peers_venv/.complete ]] || ! peers_ok; then
    [[ ! -e $peers_venv || -f $peers_venv/pyvenv.cfg ]] ||
      { echo "bench_compare: $peers_venv exists and is no venv: set PEERS_VENV" >&2; exit 1; }
    echo "bench_compare: installing ${peer_pkgs[*]} into $peers_venv (once; later runs reuse it)" >&2
    rm -rf "$peers_venv"
    # The torch Python's own interpreter: the export imports onnx from this venv beside torch.
    base_py=$("$py" -c 'import sys; print(sys._base_executable)')
    "$base_py" -m venv "$peers_venv" > "$out/pip.log" 2>&1 ||
      { echo "bench_compare: '$base_py -m venv $peers_venv' failed: $(tail -1 "$out/pip.log")" >&2; exit 1; }
    for pkg in numpy "${peer_pkgs[@]}"; do
      "$peers_py" -m pip install --quiet --disable-pip-version-check "$pkg" > "$out/pip.log" 2>&1 ||
        { echo "bench_compare: pip could not install $pkg into $peers_venv: $(grep -m1 -i error "$out/pip.log" || tail -1 "$out/pip.log")" >&2; exit 1; }
    done
    peers_ok || { echo "bench_compare: $peers_venv does not import openvino, onnxruntime and onnx at ${peer_pkgs[*]}" >&2; exit 1; }
    touch "$peers_venv/.complete"
  fi
  exp=$out/export
  export_py=("$py")
  if "$peers_py" -c 'import torch' 2>/dev/null; then
    export_py=("$peers_py")
  else
    site=$("$peers_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    [[ $("$py" -c 'import sys; print(sys.version_info[:2])') == $("$peers_py" -c 'import sys; print(sys.version_info[:2])') ]] ||
      { echo "bench_compare: $py and $peers_venv run different Python versions: remove $peers_venv" >&2; exit 1; }
    export_py=(env "PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}" "$py")
  fi
  weights_flag=()
  [[ -n $weights ]] && weights_flag=(--weights "$weights")
  "${export_py[@]}" scripts/bench_peers.py export --out "$exp" "${weights_flag[@]}" 2> "$out/export.log" ||
    { echo "bench_compare: the ONNX export failed: $(tail -1 "$out/export.log")" >&2; exit 1; }
  "$bin" infer --weights "$exp/weights.safetensors" --preset thinkingvit_3h_6h --strict \
    --input "$exp/check_images.safetensors" --output "$exp/ours_logits.safetensors" \
    --threads "$threads" --device cpu 2> "$out/infer.log" ||
    { echo "bench_compare: thinkingvit infer failed: $(tail -1 "$out/infer.log")" >&2; exit 1; }
  pb=()
  ((per_batch)) && pb=(--per-batch)
  ours=("$bin" bench --preset thinkingvit_3h_6h --weights "$exp/weights.safetensors"
        --batch-sizes "$batch" --threads "$threads" --precision "$precision" --taus "$taus"
        --stop-shares "$stop_shares" --stream "$stream" "${pb[@]}" --device cpu --reps "$reps"
        --warmup "$warmup" "${ours_flags[@]}" --format csv)
  peer=("$peers_py" scripts/bench_peers.py run --dir "$exp" --batch "$batch" --threads "$threads"
        --precision "$precision" --taus "$taus" --stop-shares "$stop_shares" --stream "$stream"
        "${pb[@]}" --reps "$reps" --warmup "$warmup")
  runtimes=(openvino onnxruntime)
  if [[ $precision == bf16 ]]; then
    runtimes=(openvino)
    echo "bench_compare: ONNX Runtime has no bf16 CPU path: n/a" >&2
  fi
  start=$SECONDS longest=0 done_rounds=0
  for ((r = 0; r < pairs; r++)); do
    next_round_fits "$r" || break
    round_start=$SECONDS
    "${ours[@]}" > "$out/ours.$r.csv" 2> "$out/ours.log" ||
      { echo "bench_compare: thinkingvit bench exited with status $?: $(grep -m1 error: "$out/ours.log" || tail -1 "$out/ours.log")" >&2; exit 1; }
    for rt in "${runtimes[@]}"; do
      first=()
      ((r == 0)) && first=(--reference "$exp/ours_logits.safetensors" --info "$out/info_$rt.json")
      "${peer[@]}" --runtime "$rt" "${first[@]}" > "$out/$rt.$r.csv" 2> "$out/$rt.log" ||
        { echo "bench_compare: $rt exited with status $?: $(grep -v '^\s*$' "$out/$rt.log" | tail -1)" >&2; exit 1; }
    done
    longest=$((SECONDS - round_start > longest ? SECONDS - round_start : longest))
    done_rounds=$((r + 1))
  done
  echo "bench_compare: $done_rounds round(s) in $((SECONDS - start)) s" >&2
  info=()
  for rt in "${runtimes[@]}"; do info+=("$out/info_$rt.json"); done
  "$peers_py" scripts/bench_peers.py summary --out "$out" --rounds "$done_rounds" --taus "$taus" \
    --stop-shares "$stop_shares" --info "${info[@]}"
  exit
fi
common=(--batch "$batch" --threads "$threads" --precision "$precision" --taus "$taus" --device "$device"
        --reps "$reps" --warmup "$warmup" --train)
ours=("$bin" bench --preset "$preset" --batch-sizes "$batch" --threads "$threads"
      --precision "$precision" --taus "$taus" --device "$device" --reps "$reps" --warmup "$warmup"
      --train "${ours_flags[@]}" --format csv)
start=$SECONDS longest=0 done_rounds=0
for ((r = 0; r < pairs; r++)); do
  next_round_fits "$r" || break
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
