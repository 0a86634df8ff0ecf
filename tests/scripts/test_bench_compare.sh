#!/bin/bash
# scripts/bench_compare.sh end to end on the CPU (CTest: bench_compare), at batch 1 with one
# repetition: the interleaved rounds, the side-by-side table (every row, images/s per
# implementation, the ratio columns), --max-seconds stopping after the first round, and a bad
# option failing with one line.
#
#   tests/scripts/test_bench_compare.sh THINKINGVIT_BIN REPO_ROOT [PYTHON]
#
# PYTHON (default python3) must import torch; exits 77 (skipped) when it does not.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 THINKINGVIT_BIN REPO_ROOT [PYTHON]" >&2
  exit 2
fi
BIN=$1 ROOT=$2 PY=${3:-python3}
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "note: $PY cannot import torch (scripts/setup.sh installs one); skipping"
  exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { PYTHON=$PY THINKINGVIT_BIN=$BIN bash "$ROOT/scripts/bench_compare.sh" --batch 1 --reps 1 --warmup 0 --taus 0 "$@"; }

run --pairs 2 >"$TMP/table.md" 2>"$TMP/log" || { cat "$TMP/log"; fail "bench_compare exited non-zero"; }
cat "$TMP/table.md"
grep -q "2 interleaved rounds" "$TMP/table.md" || fail "the table does not say 2 rounds"
grep -q "^| row | ours img/s | eager img/s | ours/eager (min..max) |$" "$TMP/table.md" ||
  fail "unexpected header"
for row in "stage 0" "stage 1" "elastic tau 0" "train"; do
  # A measured rate for both, and a ratio with its spread.
  grep -Eq "^\| $row \| [0-9]+\.[0-9]+ \| [0-9]+\.[0-9]+ \| [0-9]+\.[0-9]+x \([0-9.]+\.\.[0-9.]+\) \|$" \
    "$TMP/table.md" || fail "row '$row' missing or malformed"
done
[ "$(grep -c "^bench_compare: round" "$TMP/log")" -eq 2 ] || fail "expected 2 rounds in the log"

run --pairs 3 --max-seconds 1 >"$TMP/short.md" 2>"$TMP/short.log" || { cat "$TMP/short.log"; fail "--max-seconds run exited non-zero"; }
grep -q "stopping after 1 of 3 rounds (--max-seconds 1)" "$TMP/short.log" || fail "--max-seconds did not stop"
grep -q "1 interleaved rounds" "$TMP/short.md" || fail "the short table does not say 1 round"

if run --pairs x >"$TMP/bad.md" 2>"$TMP/bad.log"; then fail "--pairs x was accepted"; fi
[ "$(wc -l <"$TMP/bad.log")" -eq 1 ] && grep -q "\-\-pairs expects a count >= 1, found 'x'" "$TMP/bad.log" ||
  fail "bad --pairs: $(cat "$TMP/bad.log")"
[ ! -s "$TMP/bad.md" ] || fail "bad --pairs wrote a table"
echo "bench_compare: ok"
