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
# Needs bash 4.4 or later only: the processes are polled (kill -0, then wait PID), not waited for
# with `wait -n -p` (bash 5.1). tests/scripts/test_launch_local.sh checks it with a stand-in command.
# shellcheck shell=bash
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

pids=()   # pids[r]: rank r's process
ended=()  # ended[r]=1 once rank r's status has been collected
# The traps call these two (shellcheck does not follow calls inside trap strings).
# shellcheck disable=SC2317
signal_running() {
  local r
  for ((r = 0; r < ${#pids[@]}; r++)); do
    [[ -n ${ended[r]:-} ]] || kill -s "$1" "${pids[r]}" 2>/dev/null || true
  done
}
cleanup() { signal_running TERM; }
forwarded=""
# shellcheck disable=SC2317
forward() {
  forwarded=$1
  signal_running "$1"
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
  pids[r]=$!
done
status=0
left=$n
failed=""
# Each round collects the status of every process that has ended (kill -0 fails once the shell
# has reaped it; wait PID then returns its status at once), then sleeps 0.1 s in a `wait` on a
# background sleep, which a trapped signal interrupts, so signals are passed on without delay.
while ((left > 0)) && [[ -z $failed ]]; do
  for ((r = 0; r < n; r++)); do
    [[ -z ${ended[r]:-} ]] || continue
    if kill -0 "${pids[r]}" 2>/dev/null; then continue; fi  # still running
    rc=0
    wait "${pids[r]}" || rc=$?
    ended[r]=1
    left=$((left - 1))
    ((rc != 0)) || continue
    status=$rc
    # Stopping on request (a signal passed on, or 75: a process that received one itself, as
    # every rank then stops after the same step): each process ends on its own.
    [[ -z $forwarded && $rc != 75 ]] || continue
    why="exit $rc"
    if ((rc > 128)) && sig=$(kill -l "$rc" 2>/dev/null); then why+=", signal $sig"; fi
    echo "launch_local: rank $r failed ($why); stopping the others" >&2
    failed=$r
    cleanup
    break
  done
  if ((left > 0)) && [[ -z $failed ]]; then
    sleep 0.1 &
    wait $! 2>/dev/null || true
  fi
done
wait 2>/dev/null || true
exit "$status"
