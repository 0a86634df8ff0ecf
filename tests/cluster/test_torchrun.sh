#!/usr/bin/env bash
# `thinkingvit train` under the real torchrun (torch.distributed.run of the build's own torch), as
# users launch it. Each mode ends with the weights, EMA and optimizer state of an uninterrupted
# two-process run, bit for bit:
#   standalone  torchrun --standalone --nproc-per-node 2
#   c10d        torchrun --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT (a multi-node set-up
#               on one node)
#   restart     --max-restarts 2, rank 1 SIGKILLed mid-run in the first attempt; the restarted
#               group resumes by itself with --auto-resume, its keys under /worker/attempt_1
#
#   test_torchrun.sh BIN CHECKOUT PYTHON MODE
set -euo pipefail
BIN=$(realpath "$1") ROOT=$(realpath "$2") PY=${3:-python3} MODE=$4
WORK=$(mktemp -d)
trap '[[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
# shellcheck source=tests/cluster/common.sh
source "$ROOT/tests/cluster/common.sh"
"$PY" -c 'import torch.distributed.run' 2>/dev/null || fail "$PY has no torch.distributed.run"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1

write_tiny_config
reference_run

run=$WORK/run
launcher=(--nproc-per-node 2 --no-python)
cmd=("$BIN")
case $MODE in
  standalone) launcher+=(--standalone) ;;
  c10d)
    launcher+=(--nnodes 1 --rdzv-backend c10d --rdzv-endpoint "127.0.0.1:$(free_port)"
      --rdzv-id "tvit-$$")
    ;;
  restart)
    # Attempt 0 only: rank 1 kills itself with SIGKILL after global batch 8 (a checkpoint
    # was written after batch 6); torchrun then restarts both workers.
    cat >"$WORK/worker.sh" <<WRAP
#!/usr/bin/env bash
if [ "\${TORCHELASTIC_RESTART_COUNT:-0}" = 0 ]; then export THINKINGVIT_KILL_AT=batch:8:1; fi
exec "$BIN" "\$@"
WRAP
    chmod +x "$WORK/worker.sh"
    launcher+=(--standalone --max-restarts 2 --monitor-interval 0.2)
    cmd=("$WORK/worker.sh")
    ;;
  *) fail "unknown mode '$MODE'" ;;
esac

start=$(date +%s)
"$PY" -m torch.distributed.run "${launcher[@]}" "${cmd[@]}" train --config "$WORK/tiny.yaml" \
  --output-dir "$run" --auto-resume >"$WORK/torchrun.log" 2>&1 ||
  fail "torchrun exited $?: $(tail -20 "$WORK/torchrun.log")"
echo "torchrun ($MODE) took $(($(date +%s) - start)) s"

# Every rank a client of the agent's store, keys under this attempt's prefix, no bind error.
log=$WORK/torchrun.log  # what the ranks printed, lines from before train.log was opened too
expect_in "$log" "distributed: rank 0 of 2 (torchrun, local rank 0 of 2), gloo via "
expect_in "$log" "(address: MASTER_ADDR, port: MASTER_PORT, torchelastic agent store, keys under /worker/attempt_"
if grep -qiE "EADDRINUSE|address already in use|failed to listen" "$log"; then
  fail "a rank tried to host the agent's store: $(grep -iE "EADDRINUSE|in use|listen" "$log" | head -3)"
fi
if [[ $MODE == restart ]]; then
  expect_in "$log" "--auto-resume: no checkpoint in"
  expect_in "$log" "keys under /worker/attempt_1"
  expect_in "$log" "--auto-resume: '$run/checkpoints' holds a checkpoint; resuming"
  expect_in "$log" "resumed from $run/checkpoints/epoch_0000_batch_000006"
else
  expect_in "$log" "--auto-resume: no checkpoint in '$run'; starting fresh"
fi
same_as_reference "$run"
echo "PASS: torchrun $MODE"
