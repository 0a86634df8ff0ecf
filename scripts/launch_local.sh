#!/usr/bin/env bash
# Starts N processes of a command on this machine as one data-parallel job, with the
# torchrun-style variables the trainer reads (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
# MASTER_ADDR, MASTER_PORT). If one process fails, the others are stopped and the script exits
# with that process's status (75, a run stopped by a signal, is no failure: the others stop after
# the same step on their own).
#
#   scripts/launch_local.sh 2 build/thinkingvit train --config configs/fashion_mnist_2h_4h.yaml
#
# Rank 0 prints as usual; the other ranks print only warnings and errors, prefixed "[rank N]".
# MASTER_PORT defaults to a free port; set it (and MASTER_ADDR) to override.
# SIGTERM and SIGUSR1 are passed on to every process (a training run then writes a checkpoint
# and exits with 75, which this script returns); SIGINT stops them all at once.
set -euo pipefail
if [[ $# -lt 2 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 NUM_PROCESSES COMMAND [ARGS...]" >&2
  exit 2
fi
n=$1
shift
export WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
if [[ -z ${MASTER_PORT:-} ]]; then
  MASTER_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((29500 + RANDOM % 1000)))
fi
export MASTER_PORT
# OpenMP threads spinning while another process computes cost far more than they save.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
forwarded=""
forward() {
  forwarded=$1
  for p in "${pids[@]}"; do kill -s "$1" "$p" 2>/dev/null || true; done
}
trap 'cleanup; exit 130' INT
trap 'forward TERM' TERM
trap 'forward USR1' USR1
for ((r = 0; r < n; r++)); do
  if ((r == 0)); then
    RANK=$r LOCAL_RANK=$r "$@" &
  else
    RANK=$r LOCAL_RANK=$r "$@" 2> >(sed -u "s/^/[rank $r] /" >&2) > >(sed -u "s/^/[rank $r] /") &
  fi
  pids+=($!)
done
status=0
declare -A running=()
for p in "${pids[@]}"; do running[$p]=1; done
while ((${#running[@]} > 0)); do
  finished=""
  set +e
  wait -n -p finished "${!running[@]}"  # the first of the remaining processes to end
  rc=$?
  set -e
  if [[ -z ${finished:-} ]]; then
    ((rc > 128 && rc != 255)) && continue  # a signal was passed on: keep waiting for them
    break
  fi
  unset "running[$finished]"
  if ((rc != 0)); then
    status=$rc
    # Stopping on request (a signal passed on, or 75: a process that received one itself, as
    # every rank then stops after the same step): each process ends on its own.
    [[ -n $forwarded || $rc == 75 ]] && continue
    echo "launch_local: a process failed (exit $rc); stopping the others" >&2
    cleanup
    break
  fi
done
wait 2>/dev/null || true
exit "$status"
