#!/usr/bin/env bash
# The main job on a fresh Debian machine, CPU only: installs what is missing and builds
# (scripts/setup.sh), trains a two-stage ThinkingViT (2 -> 4 heads) on Fashion-MNIST, evaluates
# both stages, sweeps the entropy threshold with measured early-exit throughput, and prints where
# everything is.
#
#   scripts/demo.sh                          # the bundled configs/fashion_mnist_2h_4h.yaml
#   scripts/demo.sh --set schedule.epochs=1  # extra `train --set` overrides (a quicker run)
#
#   RUN_DIR   run folder (default: runs/fashion_mnist_demo; an existing one is replaced)
#   PROCS     training processes (default: 2 when there are 2+ cores: data parallel over Gloo,
#             one thread each, which is faster on small CPUs than one process with 2 threads)
#   TAUS      thresholds to sweep (default 0:2.3:0.1)
#   SETUP=0   skip scripts/setup.sh (the README check runs the demo from an existing build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [[ ${SETUP:-1} != 0 ]]; then bash scripts/setup.sh; fi
bin=${THINKINGVIT_BIN:-$root/${BUILD_DIR:-build}/thinkingvit}
run=${RUN_DIR:-runs/fashion_mnist_demo}
cores=$(nproc)
procs=${PROCS:-$((cores >= 2 ? 2 : 1))}
taus=${TAUS:-0:2.3:0.1}
sets=()
for arg in "$@"; do sets+=("$arg"); done

rm -rf "$run"
mkdir -p "$run"
start=$(date +%s)

echo "== train: configs/fashion_mnist_2h_4h.yaml, $procs process(es), run folder $run"
# Training processes share the cores: their OpenMP threads sleep rather than spin while waiting.
# (The sweep below times one process: spinning threads serve its small operators faster.)
OMP_WAIT_POLICY=PASSIVE bash scripts/launch_local.sh "$procs" "$bin" train --config configs/fashion_mnist_2h_4h.yaml \
  --output-dir "$run" "${sets[@]}"
trained=$(date +%s)

echo "== eval: every stage alone on the test set"
"$bin" eval --run "$run" --output "$run/eval.csv" | tee "$run/eval.md"
echo "== sweep: one pass, then every threshold with measured early exit"
"$bin" sweep --run "$run" --taus "$taus" | tee "$run/sweep.txt"
done_at=$(date +%s)

# From the sweep's CSV: for an accuracy margin m, the threshold that stops the most images at
# stage 0 while staying within m points of running every stage (tau = 0).
pick() {
  awk -F, -v m="$1" 'NR == 2 { full = $2; ips0 = $7 }
    NR > 1 { split($5, share, "/");
             if ($2 >= full - m && share[1] > best) { best = share[1]; line = $0 } }
    END { split(line, f, ",");
          printf "tau %s: top-1 %.2f%% (tau 0: %.2f%%), %.1f%% of images stop at stage 0, %.0f img/s = %.2fx tau 0",
                 f[1], f[2], full, 100 * best, f[7], f[7] / ips0 }' "$run/sweep/sweep.csv"
}

cat <<EOF

== done in $((done_at - start)) s (train $((trained - start)) s, eval + sweep $((done_at - trained)) s)
within 1 point of every stage:   $(pick 1)
within 0.1 point of every stage: $(pick 0.1)
run folder $run/:
  config.yaml              the resolved configuration
  train.log, metrics.jsonl logs and per-step / per-epoch metrics
  checkpoints/, best/      weights (best/ loads with --weights $run/best)
  eval.md, eval.csv        each stage alone on the 10,000 test images
  sweep/sweep.{md,csv,json} accuracy / GMACs / measured throughput for every threshold
  sweep/sweep.png          the figure (accuracy vs GMACs and vs throughput, entropy histogram)
EOF
