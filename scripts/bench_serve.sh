#!/usr/bin/env bash
# The serving table: `thinkingvit serve` with cross-request regrouping, the same server with
# per-request early exit (--no-regroup), and without early exit (tau 0: every stage), each under
# the same closed-loop load from scripts/loadgen.py, beside bench's regrouped elastic rate at the
# server's batch and thread count. The server runs on core 0 (one intra-op thread), the load
# generator on core 1 (taskset).
#
#   scripts/bench_serve.sh WEIGHTS [TAU=0.9] [BATCH=16] [DELAY_MS=10] [SECONDS=10]
#                          [CLIENTS=8] [IMAGES_PER_REQUEST=16] [RATE=100]
#
# Closed loop (CLIENTS clients) measures sustained throughput; Poisson arrivals at RATE
# requests/s, below saturation, measure latency.
#
# Needs a built build/thinkingvit with `serve`, and two or more cores.
set -euo pipefail
cd "$(dirname "$0")/.."
weights=${1:?usage: bench_serve.sh WEIGHTS [TAU] [BATCH] [DELAY_MS] [SECONDS] [CLIENTS] [IMAGES]}
tau=${2:-0.9} batch=${3:-16} delay=${4:-10} seconds=${5:-10} clients=${6:-8} per=${7:-16}
rate=${8:-100}
port=$((20000 + RANDOM % 20000))

run_one() {  # label, threshold, load (loadgen flags), extra serve flags...
  local label=$1 threshold=$2 load=$3
  shift 3
  taskset -c 0 build/thinkingvit serve --weights "$weights" --port "$port" --threads 1 \
    --max-batch "$batch" --max-delay-ms "$delay" --threshold "$threshold" "$@" >/tmp/bench_serve.log 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break
    sleep 0.1
  done
  local report
  # shellcheck disable=SC2086  # $load is two words: the loadgen mode and its value
  report=$(taskset -c 1 python3 scripts/loadgen.py --url "http://127.0.0.1:$port" \
    $load --images-per-request "$per" --duration "$seconds" --warmup 2)  # word-split on purpose
  local fill
  fill=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^thinkingvit_stage_batch_fill/ {printf "%s%.2f", sep, $2; sep="/"}')
  kill -TERM "$pid"
  wait "$pid"
  python3 - "$label" "$report" "$fill" <<'PY'
import json, sys
label, r, fill = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
print("| %s | %s | %.0f | %.1f | %.1f | %.1f | %s | %s |" % (label, r["mode"], r["img_per_s"], r["p50_ms"], r["p90_ms"], r["p99_ms"], fill, r["codes"]))
PY
}

echo "| server | load | img/s | p50 ms | p90 ms | p99 ms | stage batch fill | codes |"
echo "|---|---|---:|---:|---:|---:|---|---|"
closed="--concurrency $clients" open="--rate $rate"
run_one "regrouped, tau $tau" "$tau" "$closed"
run_one "per request (--no-regroup), tau $tau" "$tau" "$closed" --no-regroup
run_one "no early exit (tau 0)" 0 "$closed"
run_one "regrouped, tau $tau" "$tau" "$open"
run_one "per request (--no-regroup), tau $tau" "$tau" "$open" --no-regroup
run_one "no early exit (tau 0)" 0 "$open"
echo
echo "bench, regrouped elastic at tau $tau, batch $batch, 1 thread (synthetic images):"
taskset -c 0 build/thinkingvit bench --weights "$weights" --batch-sizes "$batch" --taus "$tau" \
  --threads 1 --reps 20 2>/dev/null | grep -E "^\| (mode|elastic|stage) "
