#!/usr/bin/env bash
# `eval` and `sweep` on two processes (eval under the real torchrun, sweep under
# scripts/launch_local.sh) against one: each process evaluates every other image, and the tables
# must equal one process's exactly (accuracy per stage, every threshold's accuracy, GMACs and
# stop shares, the entropy histogram). 45 images, so that the shards differ in size. And `bench`
# on two processes runs on rank 0 alone.
#
#   test_sharded_eval.sh BIN CHECKOUT PYTHON
set -euo pipefail
BIN=$(realpath "$1") ROOT=$(realpath "$2") PY=${3:-python3}
WORK=$(mktemp -d)
trap '[[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
# shellcheck source=tests/cluster/common.sh
source "$ROOT/tests/cluster/common.sh"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1

# The golden tests' tiny model (random weights, so that its entropies spread) on the tiny job's
# synthetic validation images.
write_tiny_config
sed 's/stages: \[1, 2\]/stages: [1, 2, 3]/' "$WORK/tiny.yaml" >"$WORK/eval.yaml"
common=(--config "$WORK/eval.yaml" --weights "$ROOT/tests/fixtures/tiny_weights.safetensors"
  --set data.synthetic_size=45)

"$BIN" eval "${common[@]}" --format csv >"$WORK/eval_1.csv" 2>"$WORK/eval_1.log" ||
  fail "eval on one process failed: $(tail -3 "$WORK/eval_1.log")"
# "--": else torchrun takes the binary's --run for an abbreviation of its own --run-path.
"$PY" -m torch.distributed.run --standalone --nproc-per-node 2 --no-python \
  -- "$BIN" eval "${common[@]}" --format csv >"$WORK/eval_2.csv" 2>"$WORK/eval_2.log" ||
  fail "eval under torchrun failed: $(tail -5 "$WORK/eval_2.log")"
expect_in "$WORK/eval_2.log" "val: 2 processes, each evaluating every 2th image (23 here)"
[[ $(grep -c '^[0-9]' "$WORK/eval_2.csv") == 3 ]] || fail "torchrun's eval printed $(cat "$WORK/eval_2.csv")"
diff "$WORK/eval_1.csv" "$WORK/eval_2.csv" >&2 || fail "eval on 2 processes differs from one"

sweep=(sweep "${common[@]}" --taus 0:2.3:0.05 --no-plot --reps 1 --timing-batches 1)
"$BIN" "${sweep[@]}" --output-dir "$WORK/sweep_1" >"$WORK/sweep_1.log" 2>&1 ||
  fail "sweep on one process failed: $(tail -3 "$WORK/sweep_1.log")"
bash "$ROOT/scripts/launch_local.sh" 2 "$BIN" "${sweep[@]}" --output-dir "$WORK/sweep_2" \
  >"$WORK/sweep_2.log" 2>&1 || fail "sweep on 2 processes failed: $(tail -5 "$WORK/sweep_2.log")"
expect_in "$WORK/sweep_2.log" "sweep: accuracy over all 2 processes' images; throughput timed by rank 0 alone"
# Accuracy, GMACs, stop shares and per-stage top-1 (columns 1-6), not the timings.
for n in 1 2; do cut -d, -f1-6 "$WORK/sweep_$n/sweep.csv" >"$WORK/acc_$n.csv"; done
diff "$WORK/acc_1.csv" "$WORK/acc_2.csv" >&2 || fail "the sweep on 2 processes differs from one"
[[ $(tail -n +2 "$WORK/acc_1.csv" | cut -d, -f5 | sort -u | wc -l) -ge 6 ]] ||
  fail "the thresholds split no images: $(cut -d, -f5 "$WORK/acc_1.csv" | sort -u | tr '\n' ' ')"
diff "$WORK/sweep_1/entropy_hist.csv" "$WORK/sweep_2/entropy_hist.csv" >&2 ||
  fail "the entropy histogram on 2 processes differs from one"

# bench times one process: on two, rank 0 alone prints one table and says why.
bash "$ROOT/scripts/launch_local.sh" 2 "$BIN" bench --weights "$ROOT/tests/fixtures/tiny_weights.safetensors" \
  --head-dim 4 --batch-sizes 2 --reps 1 --warmup 0 --threads 1 --format csv \
  >"$WORK/bench.csv" 2>"$WORK/bench.log" || fail "bench on 2 processes failed: $(tail -3 "$WORK/bench.log")"
[[ $(grep -c '^mode,' "$WORK/bench.csv") == 1 && $(grep -c '^stage,' "$WORK/bench.csv") == 3 ]] ||
  fail "bench on 2 processes printed: $(cat "$WORK/bench.csv")"
expect_in "$WORK/bench.log" "bench: launched as 2 processes (torchrun); it times one process, so rank 0 runs it alone"
echo "PASS: eval and sweep on two processes equal one; bench runs on one"
