#!/bin/bash
# A real one-machine Slurm cluster (slurmctld + one slurmd + a private munged) for the tests,
# laid out entirely under a folder the caller made, on loopback, without systemd or cgroups.
#
#   tests/cluster/slurm_cluster.sh start DIR   # lay out DIR, start the daemons, wait for idle
#   tests/cluster/slurm_cluster.sh stop DIR    # cancel jobs, stop the daemons, leave no process
#   tests/cluster/slurm_cluster.sh status DIR  # exit 0 when the node answers idle/mixed/alloc
#
# After start, `. DIR/env.sh` points srun/sbatch/salloc/squeue/scontrol at the cluster
# (SLURM_CONF; any SLURM_* inherited from an outer job is unset). start on a DIR whose daemons
# still run stops them first; stop on a DIR that never started (or is already stopped) is a
# no-op. Several DIRs may run at once: ports are picked free and every file lives in its DIR.
#
# Needs slurm-wlm and munge (Debian: apt-get install slurm-wlm munge); exits 77 (skipped) when
# the binaries are missing. Runs as root or as any user (SlurmUser is the caller).
#
# Environment knobs: SLURM_CLUSTER_CPUS (CPUs the node declares; default max(nproc, 8), so that
# `srun -n 4` fits on a 2-core machine), SLURM_CLUSTER_WAIT (seconds to wait for idle; 30),
# SLURM_CLUSTER_DEBUG (slurmctld/slurmd log level; info).
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
CMD=$1
case $CMD in start | stop | status) ;; *) usage ;; esac
[ -n "$2" ] || usage
mkdir -p "$2"
DIR=$(cd "$2" && pwd -P)

CONF=$DIR/slurm.conf
MUNGE_DIR=$DIR/munge
SOCKET=$MUNGE_DIR/munge.socket
RUN=$DIR/run
LOG=$DIR/log

log() { echo "slurm_cluster: $*" >&2; }

die() {
  log "error: $*"
  local f
  for f in "$LOG/munged.log" "$LOG/slurmctld.log" "$LOG/slurmd.log"; do
    if [ -s "$f" ]; then
      echo "---- tail of $f" >&2
      tail -n 25 "$f" >&2
    fi
  done
  exit 1
}

# RUN/<daemon>.pid holds the pid this script started; the daemons write their own pid files
# under other names (<daemon>.pid.slurm, munged.pid.munged). Sharing one file raced: a read
# while slurmctld truncated and rewrote it looked like an exited daemon, and the start failed.
#
# The pid recorded in FILE when that process still runs and its command line names DIR
# (a recycled pid is never taken for ours).
live_pid() {
  local file=$1 pid
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/" || return 1
  echo "$pid"
}

# TERM, then KILL after a bounded wait, for each pid given.
kill_wait() {
  local pid i left
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for i in $(seq 1 50); do
    left=0
    for pid in "$@"; do
      if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
        left=1
      fi
    done
    [ $left -eq 1 ] || return 0
    [ "$i" -lt 50 ] || break
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
  sleep 0.2
}

# Every descendant of the given pids (children first is not needed: all get KILL at the end).
descendants() {
  local p c
  for p in "$@"; do
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
      echo "$c"
      descendants "$c"
    done
  done
}

# slurmstepd processes of this cluster: they keep a socket or file open under DIR/spool.
our_stepds() {
  local pid fd
  for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
    for fd in "/proc/$pid/fd/"*; do
      case $(readlink "$fd" 2>/dev/null) in "$DIR"/*) echo "$pid" && continue 2 ;; esac
    done
    if tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF -- "SLURM_CONF=$CONF"; then
      echo "$pid"
    fi
  done
}

do_stop() {
  local pid pids=() stepds
  if [ -f "$CONF" ] && live_pid "$RUN/slurmctld.pid" >/dev/null; then
    # Cancel every job so that slurmd reaps the tasks through its proctrack plugin.
    SLURM_CONF=$CONF scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 50); do
      [ -z "$(SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for f in slurmd slurmctld; do
    if pid=$(live_pid "$RUN/$f.pid"); then pids+=("$pid"); fi
  done
  if [ ${#pids[@]} -gt 0 ]; then kill_wait "${pids[@]}"; fi
  # Steps that outlived slurmd, and their tasks.
  stepds=$(our_stepds)
  if [ -n "$stepds" ]; then
    # shellcheck disable=SC2086,SC2046 # word splitting of pid lists is intended
    kill_wait $stepds $(descendants $stepds)
  fi
  if pid=$(live_pid "$RUN/munged.pid"); then kill_wait "$pid"; fi
  rm -f "$RUN"/*.pid "$RUN"/*.pid.* "$SOCKET" "$SOCKET.lock"
}

# A TCP port nobody listens on, away from the defaults (6817-6819) and from the ones given.
free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    case " $* " in *" $p "*) continue ;; esac
    if command -v ss >/dev/null 2>&1; then
      [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] && { echo "$p"; return 0; }
    elif ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

start_munged() {
  mkdir -p "$MUNGE_DIR"
  chmod 700 "$MUNGE_DIR"
  if [ ! -s "$MUNGE_DIR/munge.key" ]; then
    (umask 077 && dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 2>/dev/null)
  fi
  chmod 400 "$MUNGE_DIR/munge.key"
  rm -f "$SOCKET" "$SOCKET.lock"
  # --force: munged wants world-execute permission on every folder above its socket, which a
  # mktemp -d folder (0700) lacks; the socket is only for this cluster's own daemons and clients.
  setsid munged --foreground --force --socket="$SOCKET" --key-file="$MUNGE_DIR/munge.key" \
    --log-file="$LOG/munged.log" --pid-file="$RUN/munged.pid.munged" \
    --seed-file="$MUNGE_DIR/munged.seed" --num-threads=4 </dev/null >>"$LOG/munged.out" 2>&1 &
  echo $! >"$RUN/munged.pid"
  for _ in $(seq 1 100); do
    if [ -S "$SOCKET" ] && munge -n -S "$SOCKET" 2>/dev/null | unmunge -S "$SOCKET" >/dev/null 2>&1; then
      return 0
    fi
    live_pid "$RUN/munged.pid" >/dev/null || break
    sleep 0.1
  done
  return 1
}

write_conf() {
  local node=$1 cpus=$2 ctld_port=$3 slurmd_port=$4 user
  user=$(id -un)
  cat >"$CONF" <<EOF
# Written by tests/cluster/slurm_cluster.sh for a one-machine test cluster.
ClusterName=tc$(printf '%s' "$DIR" | cksum | awk '{print $1}')
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid.slurm
SlurmdPidFile=$RUN/slurmd.pid.slurm
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=${SLURM_CLUSTER_DEBUG:-info}
SlurmdDebug=${SLURM_CLUSTER_DEBUG:-info}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
KillWait=2
MinJobAge=5
InactiveLimit=0
Waittime=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
UnkillableStepTimeout=30
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus RealMemory=1024 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

# A failed start leaves no daemon behind (the logs stay in DIR/log).
fail_start() {
  do_stop
  die "$@"
}

node_state() {
  SLURM_CONF=$CONF sinfo -h -N -o %T 2>/dev/null | head -n 1
}

do_start() {
  local node cpus ctld_port slurmd_port state wait_s i
  for b in slurmctld slurmd munged munge unmunge sinfo scancel squeue; do
    if ! command -v "$b" >/dev/null 2>&1; then
      log "$b not found (apt-get install slurm-wlm munge); skipping"
      exit 77
    fi
  done
  do_stop
  rm -rf "$DIR/state" "$DIR/spool" "$LOG" "$RUN"
  mkdir -p "$DIR/state" "$DIR/spool" "$LOG" "$RUN"
  node=$(hostname -s)
  cpus=${SLURM_CLUSTER_CPUS:-$(nproc)}
  [ -n "${SLURM_CLUSTER_CPUS:-}" ] || [ "$cpus" -ge 8 ] || cpus=8
  ctld_port=$(free_port 6817 6818 6819) || die "no free port for slurmctld"
  slurmd_port=$(free_port 6817 6818 6819 "$ctld_port") || die "no free port for slurmd"
  start_munged || fail_start "munged did not start with socket $SOCKET"
  write_conf "$node" "$cpus" "$ctld_port" "$slurmd_port"
  cat >"$DIR/env.sh" <<EOF
# . this file to use the test cluster in $DIR
unset \$(env | sed -n 's/^\\(SLURM_[A-Za-z0-9_]*\\)=.*/\\1/p')
export SLURM_CONF=$CONF
EOF
  # -i: ignore state left in StateSaveLocation (none: it was just emptied).
  SLURM_CONF=$CONF setsid slurmctld -D -i -f "$CONF" </dev/null >>"$LOG/slurmctld.out" 2>&1 &
  echo $! >"$RUN/slurmctld.pid"
  SLURM_CONF=$CONF setsid slurmd -D -f "$CONF" -N "$node" </dev/null >>"$LOG/slurmd.out" 2>&1 &
  echo $! >"$RUN/slurmd.pid"
  wait_s=${SLURM_CLUSTER_WAIT:-30}
  state=
  for i in $(seq 1 $((wait_s * 10))); do
    live_pid "$RUN/slurmctld.pid" >/dev/null || fail_start "slurmctld exited: $(cat "$LOG/slurmctld.out")"
    live_pid "$RUN/slurmd.pid" >/dev/null || fail_start "slurmd exited: $(cat "$LOG/slurmd.out")"
    state=$(node_state)
    case $state in idle | mixed | allocated) break ;; esac
    [ "$i" -lt $((wait_s * 10)) ] || fail_start "node not idle after ${wait_s}s (state: ${state:-no answer})"
    sleep 0.1
  done
  echo "$CONF"
}

case $CMD in
  start) do_start ;;
  stop) do_stop ;;
  status)
    [ -f "$CONF" ] || exit 1
    case $(node_state) in idle | mixed | allocated) exit 0 ;; *) exit 1 ;; esac
    ;;
esac
