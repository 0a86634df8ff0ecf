#!/usr/bin/env bash
# Regrouped early exit against early exit batch by batch and against the released formula, on
# the Fashion-MNIST demo model's shape (random weights: the stop shares set the thresholds):
# batch 16 and 64, 50 % to 95 % of the images stopping at stage 0, all rows timed in the same
# interleaved rounds.
#
#   scripts/bench_regroup.sh [REPS=30] [THREADS=2] [extra bench flags...]
#
# Needs a built build/thinkingvit. Prints bench's markdown table (the elastic rows carry
# formula_img_per_s and measured_over_formula); `--output FILE` among the extra flags saves it.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-30}
threads=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
build/thinkingvit bench --config configs/fashion_mnist_2h_4h_model.yaml --batch-sizes 16,64 \
  --stop-shares 0.5,0.75,0.875,0.95 --per-batch --reps "$reps" --warmup 3 \
  --threads "$threads" "$@"
