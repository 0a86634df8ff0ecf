#!/usr/bin/env bash
# `thinkingvit train` on a real Slurm (tests/cluster/slurm_cluster.sh: slurmctld, slurmd and
# munged started here, on this machine), launched as users launch it. Every two-process run ends
# with the weights, EMA and optimizer state of an uninterrupted hand-launched two-process run, bit
# for bit:
#   srun          srun -n 2 from the node itself, no MASTER_ADDR / MASTER_PORT
#   salloc        salloc -n 2, then srun with SLURM_LAUNCH_NODE_IPADDR pointing nowhere (a login
#                 node the compute nodes cannot reach): the ranks meet on the first host of the
#                 step's node list
#   sbatch        two batch jobs at once on the node (srun inside each): their ports derive from
#                 their job ids, so neither joins the other's store; and the binary run directly
#                 in a batch script of -n 2, which is one process and trains alone
#   scancel_usr1  scripts/train.sbatch, scancel --signal=USR1 mid-run (what its --signal=USR1@120
#                 sends): the ranks write a checkpoint and exit 75, the script requeues its own
#                 job, and the requeued job resumes with --auto-resume
#   scancel_term  the same with --signal=TERM
#   requeue       scripts/train.sbatch, scontrol requeue mid-run, as preemption does: SIGTERM to
#                 the tasks, a checkpoint within KillWait, and Slurm's own requeue resumes
#
#   test_slurm.sh BIN CHECKOUT PYTHON MODE      (exit 77 when slurm-wlm or munge is missing)
set -euo pipefail
BIN=$(realpath "$1") ROOT=$(realpath "$2") PY=${3:-python3} MODE=$4
WORK=$(mktemp -d)
CLUSTER=$ROOT/tests/cluster/slurm_cluster.sh
cleanup() {
  bash "$CLUSTER" stop "$WORK/cluster" || true
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=tests/cluster/common.sh
source "$ROOT/tests/cluster/common.sh"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1

status=0
bash "$CLUSTER" start "$WORK/cluster" >/dev/null || status=$?
[[ $status == 77 ]] && exit 77
[[ $status == 0 ]] || fail "the test cluster did not start"
# shellcheck source=/dev/null
source "$WORK/cluster/env.sh"

write_tiny_config
reference_run
run=$WORK/run
train=("$BIN" train --config "$WORK/tiny.yaml" --auto-resume)

# The rendezvous line of a Slurm step whose ports came from job ID $2 (log $1).
expect_slurm_rendezvous() {
  expect_in "$1" "distributed: rank 0 of 2 (Slurm step, local rank 0 of 2), gloo via "
  expect_in "$1" "(address: first host of SLURM_STEP_NODELIST '$(hostname -s)', port: derived from SLURM_JOB_ID $2)"
}

# Job $1's state, empty once it has left the queue.
job_state() { squeue -h -j "$1" -o %T 2>/dev/null || true; }

# Waits (at most $3 s) until file $1 holds the fixed string $2.
wait_for_line() {
  local i
  for ((i = 0; i < $3 * 10; ++i)); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "'$1' never showed '$2' within $3 s; it ends:$(echo; tail -15 "$1" 2>/dev/null)"
}

# Waits until job $1 has left the queue. A requeued job waits for a begin time Slurm sets 120 s
# ahead; the harness makes it eligible 3 s after it turned pending instead (slurmd refuses, as
# revoked, a credential issued in the second the old run's was revoked), which is all it changes
# in Slurm's behaviour.
wait_for_job() {
  local i state pending=0
  for ((i = 0; i < 2400; ++i)); do
    state=$(job_state "$1")
    [[ -z $state ]] && return 0
    if [[ $state == PENDING ]]; then
      pending=$((pending + 1))
      if ((pending == 30)); then scontrol update JobId="$1" StartTime=now 2>/dev/null || true; fi
    fi
    sleep 0.1
  done
  fail "job $1 still $(job_state "$1") after 240 s"
}

# A batch job that trains into $1 and requeues itself when train exits with 75. $2: extra
# commands run before train (exported variables).
write_job() {
  cat >"$WORK/job.sh" <<JOB
#!/usr/bin/env bash
#SBATCH --ntasks 2 --requeue --open-mode append
$2
srun ${train[*]} --output-dir $1
rc=\$?
echo "train exited \$rc (restart \${SLURM_RESTART_COUNT:-0})"
if [ \$rc = 75 ]; then scontrol requeue "\$SLURM_JOB_ID"; fi
exit \$rc
JOB
}

# The shipped scripts/train.sbatch, sized for this node, its binary a wrapper that pauses after
# global batch 7 on the job's first run only; the test signals it through Slurm once the log
# says so.
pausing_job() {
  cat >"$WORK/worker.sh" <<WRAP
#!/usr/bin/env bash
if [ -z "\${SLURM_RESTART_COUNT:-}" ]; then export THINKINGVIT_KILL_AT=pause:7; fi
exec "$BIN" "\$@"
WRAP
  chmod +x "$WORK/worker.sh"
  job=$(THINKINGVIT_BIN=$WORK/worker.sh sbatch --parsable --ntasks-per-node 2 --gpus-per-node 0 \
    --cpus-per-task 1 --time 10 --chdir "$WORK" -o "$WORK/job.out" "$ROOT/scripts/train.sbatch" \
    --config "$WORK/tiny.yaml" --output-dir "$run")
  wait_for_line "$WORK/job.out" "paused after batch 7" 120
  sleep 0.3  # the other rank's line may be a moment behind; the signal waits for neither
}

# $1: what job.out says of the first run's end.
expect_resumed_run() {
  wait_for_job "$job"
  expect_in "$WORK/job.out" "$1"
  expect_in "$WORK/job.out" "thinkingvit: train exited 0 (run 1)"
  expect_in "$WORK/job.out" "--auto-resume: '$run/checkpoints' holds a checkpoint; resuming"
  expect_in "$run/train.log" "resumed from $run/checkpoints/epoch_0000_batch_0000"
}

case $MODE in
  srun)
    timeout 240 srun -n 2 "${train[@]}" --output-dir "$run" >"$WORK/srun.log" 2>&1 ||
      fail "srun exited $?: $(tail -20 "$WORK/srun.log")"
    job=$(sed -n 's/.*port: derived from SLURM_JOB_ID \([0-9]*\)).*/\1/p' "$WORK/srun.log" | head -1)
    [[ -n $job ]] || fail "no rendezvous line in $WORK/srun.log"
    expect_slurm_rendezvous "$WORK/srun.log" "$job"
    same_as_reference "$run"
    ;;
  salloc)
    timeout 240 salloc -n 2 srun env SLURM_LAUNCH_NODE_IPADDR=no-such-host.invalid \
      "${train[@]}" --output-dir "$run" >"$WORK/salloc.log" 2>&1 ||
      fail "salloc + srun exited $?: $(tail -20 "$WORK/salloc.log")"
    job=$(sed -n 's/^salloc: Granted job allocation \([0-9]*\)/\1/p' "$WORK/salloc.log")
    [[ -n $job ]] || fail "salloc granted no allocation: $(head -5 "$WORK/salloc.log")"
    expect_slurm_rendezvous "$WORK/salloc.log" "$job"
    same_as_reference "$run"
    ;;
  sbatch)
    # Two jobs that start srun only once both run, so that both stores are up at the same time.
    jobs_=()
    for name in a b; do
      write_job "$WORK/run_$name" "touch $WORK/ready.\$SLURM_JOB_ID
for _ in \$(seq 600); do [ \$(ls $WORK | grep -c '^ready\\.') -ge 2 ] && break; sleep 0.1; done"
      jobs_[${#jobs_[@]}]=$(sbatch --parsable -o "$WORK/job_$name.out" "$WORK/job.sh")
    done
    for j in "${jobs_[@]}"; do wait_for_job "$j"; done
    i=0
    for name in a b; do
      expect_in "$WORK/job_$name.out" "train exited 0"
      expect_slurm_rendezvous "$WORK/job_$name.out" "${jobs_[$i]}"
      same_as_reference "$WORK/run_$name"
      i=$((i + 1))
    done
    # The binary alone in a batch script of -n 2: SLURM_NTASKS=2 and SLURM_PROCID=0, no step.
    cat >"$WORK/bare.sh" <<JOB
#!/usr/bin/env bash
#SBATCH --ntasks 2
${train[*]} --output-dir $WORK/bare --set schedule.epochs=1
JOB
    timeout 240 sbatch -W -o "$WORK/bare.out" "$WORK/bare.sh" >/dev/null ||
      fail "the batch script running train directly failed: $(tail -5 "$WORK/bare.out")"
    expect_in "$WORK/bare/train.log" "for global batch 2"
    if grep -qF "distributed: rank" "$WORK/bare.out"; then fail "a batch script's process waited for peers"; fi
    ;;
  scancel_usr1 | scancel_term)
    pausing_job
    signal=${MODE#scancel_}
    scancel --signal="${signal^^}" "$job"
    expect_resumed_run "thinkingvit: train exited 75 (run 0)"
    expect_in "$WORK/job.out" "thinkingvit: stopped with a checkpoint; requeueing job $job"
    expect_in "$WORK/job.out" "stopped by a signal"
    same_as_reference "$run"
    ;;
  requeue)
    pausing_job
    scontrol requeue "$job"
    # Slurm signals the batch shell too, so the script's own line never comes; srun reports the
    # tasks' status, which must be 75 (the checkpoint written within KillWait), not a kill.
    wait_for_line "$WORK/job.out" "tasks 0-1: Exited with exit code 75" 60
    expect_resumed_run "CANCELLED AT"
    same_as_reference "$run"
    ;;
  *) fail "unknown mode '$MODE'" ;;
esac
echo "PASS: slurm $MODE"
