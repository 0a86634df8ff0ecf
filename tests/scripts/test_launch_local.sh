#!/bin/bash
# scripts/launch_local.sh against a stand-in command (CTest: launch_local), no build needed: the
# variables each rank gets and its output prefix; all ranks exiting 0 give 0; a rank that fails
# (an exit status, a command not found, SIGKILL) stops the others at once and its status is the
# job's, with one line naming the rank; a rank exiting 75 lets the others finish on their own and
# the job exits 75 (and a later failure still stops the rest); SIGTERM and SIGUSR1 are passed on
# (the ranks exit 75, no failure reported); SIGINT stops every rank and exits 130.
#
#   tests/scripts/test_launch_local.sh REPO_ROOT [BASH]
#
# BASH (default bash) runs the launcher: give a bash 4.4 to check that it needs nothing newer.
# This script itself needs bash 4.4 only.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 REPO_ROOT [BASH]" >&2
  exit 2
fi
LAUNCH=$1/scripts/launch_local.sh SH=${2:-bash}
[ -f "$LAUNCH" ] || { echo "no $LAUNCH" >&2; exit 2; }
echo "launcher run by: $("$SH" --version | head -n 1)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The stand-in rank: fake.sh DIR SPEC0 SPEC1 ...; rank RANK takes SPEC[RANK], CODE@SECONDS (exit
# CODE after SECONDS) or kill@SECONDS (SIGKILL itself). It writes its variables to DIR/envR,
# DIR/startedR once its traps are set, DIR/doneR if it ran its course, and DIR/sigR (the signal's
# name) when SIGTERM or SIGUSR1 stop it; either makes it exit 75, as `thinkingvit train` does.
cat >"$TMP/fake.sh" <<'EOF'
#!/bin/bash
dir=$1
shift
specs=("$@")
spec=${specs[RANK]}
code=${spec%@*} delay=${spec#*@}
env | grep -E '^(RANK|LOCAL_RANK|WORLD_SIZE|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|OMP_WAIT_POLICY)=' |
  sort >"$dir/env$RANK"
echo "out of $RANK"
echo "err of $RANK" >&2
stop() {
  echo "$1" >"$dir/sig$RANK"
  kill "$sleeper" 2>/dev/null
  exit 75
}
trap 'stop TERM' TERM
trap 'stop USR1' USR1
sleep "$delay" &
sleeper=$!
: >"$dir/started$RANK"
wait "$sleeper"
: >"$dir/done$RANK"
if [ "$code" = kill ]; then kill -KILL $$; fi
exit "$code"
EOF

# launch CASE N SPEC...: runs the launcher on N stand-in ranks in $TMP/CASE (stdout CASE/out,
# stderr CASE/err); sets rc and ms (how long it took).
launch() {
  local case=$1 n=$2
  shift 2
  mkdir -p "$TMP/$case"
  local start
  start=$(now_ms)
  rc=0
  env -u MASTER_ADDR -u MASTER_PORT -u OMP_WAIT_POLICY "$SH" "$LAUNCH" "$n" \
    bash "$TMP/fake.sh" "$TMP/$case" "$@" >"$TMP/$case/out" 2>"$TMP/$case/err" || rc=$?
  ms=$(($(now_ms) - start))
}
# The prefixing sed of a rank may write its last line just after the launcher exits.
has_line() {  # has_line FILE LINE
  local i
  for ((i = 0; i < 50; i++)); do
    grep -qxF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
show() { echo "--- $1: exit $rc after $ms ms; stderr:"; cat "$TMP/$1/err"; }
expect_rc() {  # expect_rc CASE CODE
  [ "$rc" -eq "$2" ] || { show "$1"; fail "$1: exit $rc, expected $2"; }
}
stopped_by() {  # stopped_by CASE RANK SIGNAL: the rank was stopped by that signal
  has_line "$TMP/$1/sig$2" "$3" || { show "$1"; fail "$1: rank $2 was not sent SIG$3"; }
  [ ! -e "$TMP/$1/done$2" ] || fail "$1: rank $2 ran its course"
}
ran_its_course() {  # ran_its_course CASE RANK
  { [ -e "$TMP/$1/done$2" ] && [ ! -e "$TMP/$1/sig$2" ]; } || { show "$1"; fail "$1: rank $2 was stopped"; }
}
no_failure_line() {
  if grep -q "failed" "$TMP/$1/err"; then show "$1"; fail "$1: a failure was reported"; fi
}

# Usage errors: exit 2, no rank started.
for args in "" "2" "0 true" "x true" "-1 true"; do
  rc=0
  # shellcheck disable=SC2086  # the words of $args are the arguments
  "$SH" "$LAUNCH" $args >/dev/null 2>"$TMP/usage.err" || rc=$?
  { [ "$rc" -eq 2 ] && grep -q "^usage: " "$TMP/usage.err"; } || fail "arguments '$args': exit $rc"
done

# All ranks exit 0: the job exits 0; each rank's variables; rank 0 unprefixed, the others prefixed.
launch ok 3 0@0.3 0@0.1 0@0.5
expect_rc ok 0
port=$(sed -n 's/^MASTER_PORT=//p' "$TMP/ok/env0")
[[ $port =~ ^[0-9]+$ ]] || fail "MASTER_PORT '$port' is no port"
for r in 0 1 2; do
  ran_its_course ok "$r"
  printf '%s\n' "LOCAL_RANK=$r" LOCAL_WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 "MASTER_PORT=$port" \
    OMP_WAIT_POLICY=PASSIVE "RANK=$r" WORLD_SIZE=3 >"$TMP/ok/want$r"
  diff "$TMP/ok/want$r" "$TMP/ok/env$r" || fail "rank $r's variables"
done
{ has_line "$TMP/ok/out" "out of 0" && has_line "$TMP/ok/err" "err of 0"; } || fail "rank 0's output"
for r in 1 2; do
  { has_line "$TMP/ok/out" "[rank $r] out of $r" && has_line "$TMP/ok/err" "[rank $r] err of $r"; } ||
    fail "rank $r's output is not prefixed: $(cat "$TMP/ok/out" "$TMP/ok/err")"
done
no_failure_line ok
# MASTER_ADDR, MASTER_PORT and OMP_WAIT_POLICY set by the caller are kept; one rank works too.
mkdir -p "$TMP/given"
MASTER_ADDR=127.0.0.2 MASTER_PORT=12345 OMP_WAIT_POLICY=ACTIVE "$SH" "$LAUNCH" 1 \
  bash "$TMP/fake.sh" "$TMP/given" 0@0 >/dev/null 2>&1 || fail "one rank with given variables failed"
for var in MASTER_ADDR=127.0.0.2 MASTER_PORT=12345 OMP_WAIT_POLICY=ACTIVE; do
  grep -qx "$var" "$TMP/given/env0" || fail "the caller's $var was not kept"
done

# A rank that fails early: the others are stopped at once (not after their 30 s), the job exits
# with the failed rank's status (not the 75 of the stopped ones) and one line names the rank.
for victim in 1 0; do
  specs=(30@30 30@30 30@30)
  specs[victim]=3@0.3
  launch "fail$victim" 3 "${specs[@]}"
  expect_rc "fail$victim" 3
  ((ms < 10000)) || fail "fail$victim: took $ms ms: the others were not stopped"
  for r in 0 1 2; do ((r == victim)) || stopped_by "fail$victim" "$r" TERM; done
  { [ "$(grep -c "failed" "$TMP/fail$victim/err")" -eq 1 ] &&
    grep -qxF "launch_local: rank $victim failed (exit 3); stopping the others" "$TMP/fail$victim/err"; } ||
    { show "fail$victim"; fail "fail$victim: no single line naming rank $victim"; }
done

# A rank killed by SIGKILL: detected as a failure (128 + 9).
launch sigkill 3 30@30 kill@0.3 30@30
expect_rc sigkill 137
((ms < 10000)) || fail "sigkill: took $ms ms"
stopped_by sigkill 0 TERM
stopped_by sigkill 2 TERM
grep -qxF "launch_local: rank 1 failed (exit 137, signal KILL); stopping the others" "$TMP/sigkill/err" ||
  { show sigkill; fail "sigkill: no line naming rank 1"; }

# A command that cannot run: 127 from each rank, reported.
mkdir -p "$TMP/missing"
rc=0
"$SH" "$LAUNCH" 2 "$TMP/no-such-command" >/dev/null 2>"$TMP/missing/err" || rc=$?
ms=0
expect_rc missing 127
grep -q "launch_local: rank [01] failed (exit 127)" "$TMP/missing/err" || { show missing; fail "missing: not reported"; }

# A rank exiting 75 (it was sent a signal itself): the others run their course, the job exits 75.
launch stop75 3 0@1.5 75@0.2 75@1
expect_rc stop75 75
((ms >= 1500)) || fail "stop75: ended after $ms ms, before rank 0"
for r in 0 1 2; do ran_its_course stop75 "$r"; done
no_failure_line stop75
# ... and a failure after it still stops the rest, with the failure's status.
launch stop75fail 3 30@30 75@0.2 4@0.8
expect_rc stop75fail 4
((ms < 10000)) || fail "stop75fail: took $ms ms"
stopped_by stop75fail 0 TERM
grep -qxF "launch_local: rank 2 failed (exit 4); stopping the others" "$TMP/stop75fail/err" ||
  { show stop75fail; fail "stop75fail: no line naming rank 2"; }

# Signals sent to the launcher. signal_launcher CASE SIGNAL EXPECTED_RC: 3 ranks of 30 s, the
# signal once all have started; sets rc and ms (from the signal to the launcher's end).
signal_launcher() {
  local case=$1 sig=$2 want=$3 pid i r start
  mkdir -p "$TMP/$case"
  # A background job of a script ignores SIGINT; env --default-signal gives the launcher it back.
  local reset=env
  [ "$sig" != INT ] || reset="env --default-signal=INT"
  $reset "$SH" "$LAUNCH" 3 bash "$TMP/fake.sh" "$TMP/$case" 30@30 30@30 30@30 \
    >"$TMP/$case/out" 2>"$TMP/$case/err" &
  pid=$!
  for ((i = 0; i < 200; i++)); do
    [ -e "$TMP/$case/started0" ] && [ -e "$TMP/$case/started1" ] && [ -e "$TMP/$case/started2" ] && break
    sleep 0.05
  done
  ((i < 200)) || { kill "$pid"; fail "$case: the ranks did not start"; }
  start=$(now_ms)
  kill -s "$sig" "$pid"
  rc=0
  wait "$pid" || rc=$?
  ms=$(($(now_ms) - start))
  expect_rc "$case" "$want"
  ((ms < 10000)) || fail "$case: took $ms ms after SIG$sig"
}
for sig in TERM USR1; do
  signal_launcher "sig$sig" "$sig" 75
  for r in 0 1 2; do stopped_by "sig$sig" "$r" "$sig"; done
  no_failure_line "sig$sig"
done
if env --default-signal=INT true 2>/dev/null; then
  signal_launcher sigINT INT 130
  for r in 0 1 2; do stopped_by sigINT "$r" TERM; done
else
  echo "note: this env has no --default-signal; SIGINT not checked"
fi
echo "launch_local: ok"
