#!/usr/bin/env bash
# The main job on the bundled default: set-up, then train a two-stage ThinkingViT on
# Fashion-MNIST (CPU), evaluate both stages and sweep the entropy threshold.
#   RUN=runs/fashion_mnist   run folder
#   any further arguments go to `thinkingvit train` (e.g. --set schedule.epochs=2)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
RUN=${RUN:-runs/fashion_mnist}
export OMP_WAIT_POLICY=PASSIVE
start=$(date +%s)
build/thinkingvit train --config configs/fashion_mnist_2h_4h.yaml --output-dir "$RUN" "$@"
build/thinkingvit eval --run "$RUN"
build/thinkingvit sweep --run "$RUN" --taus 0:2.3:0.1 --output-dir "$RUN/sweep"
echo
echo "demo: train + eval + sweep took $(( $(date +%s) - start )) s"
echo "run folder: $RUN (config.yaml, train.log, metrics.jsonl, checkpoints/, best/)"
echo "sweep: $RUN/sweep/sweep.md, sweep.csv, sweep.json, sweep.png"
