#!/bin/bash
# scripts/bench_compare.sh end to end on the CPU (CTest: bench_compare), at batch 1 with one
# repetition: the interleaved rounds, the side-by-side table (every row, images/s per
# implementation, the ratio columns), --max-seconds stopping after the first round, a bad option
# failing with one line, and the glue to the released code (scripts/bench_released.py, ViT and
# --model swin-t) against a stand-in checkout whose timm offers the released models' entry
# points (create_model, the stage / round forwards, entropy, the elastic and training calls) on
# a tiny network: no checkout of the real code is needed.
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

# The stand-in released checkout: the call signatures scripts/bench_released.py uses.
mkdir -p "$TMP/released/timm/models"
: >"$TMP/released/timm/__init__.py"
cat >"$TMP/released/timm/models/__init__.py" <<'PY'
import torch


class Tiny(torch.nn.Module):
    def __init__(self, num_classes, rounds):
        super().__init__()
        self.rounds, self.p = rounds, 1.0
        self.body = torch.nn.Linear(3, 8)
        self.head = torch.nn.Linear(8, num_classes)

    def _tokens(self, x, prev):
        t = self.body(x.mean((2, 3)))
        return t if prev is None else t + prev

    def _stage_ratio(self, heads):  # ViT
        return heads / max(self.rounds)

    def forward_features(self, x, p, prev, stages):  # ViT
        return self._tokens(x, prev)

    def _forward_round(self, x, heads, prev_tokens=None):  # Swin
        return self._tokens(x, prev_tokens), 8

    def forward_head(self, tokens, keep_dim=None):
        return self.head(tokens)

    def entropy(self, logits):
        p = logits.softmax(1)
        return -(p * p.log()).sum(1, keepdim=True)

    def forward(self, x, threshold=None, thinking_stages=None):
        t0 = self._tokens(x, None)
        t1 = self._tokens(x, t0)
        l0, l1 = self.head(t0), self.head(t1)
        if self.training:
            return [l0, l1]
        stop = self.entropy(l0) < threshold
        return torch.where(stop, l0, l1), stop.long().squeeze(1)


def create_model(name, num_classes=1000, img_size=224, thinking_stages=None, head_rounds=None):
    if name == "thinkingvit":
        return Tiny(num_classes, thinking_stages)
    assert name.startswith("swin_") and head_rounds is not None, name
    return Tiny(num_classes, [r[0] for r in head_rounds])
PY

run --pairs 2 --released "$TMP/released" >"$TMP/table.md" 2>"$TMP/log" || { cat "$TMP/log"; fail "bench_compare exited non-zero"; }
cat "$TMP/table.md"
grep -q "^ThinkingViT 3H->6H, .* 2 interleaved rounds" "$TMP/table.md" || fail "the table does not say 2 rounds"
grep -q "^| row | ours img/s | released img/s | eager img/s | ours/released (min..max) | ours/eager (min..max) |$" "$TMP/table.md" ||
  fail "unexpected header"
rate="[0-9]+\.[0-9]+" ratio="[0-9]+\.[0-9]+x \([0-9.]+\.\.[0-9.]+\)"
for row in "stage 0" "stage 1" "elastic tau 0" "train"; do
  # A measured rate for each, and a ratio with its spread.
  grep -Eq "^\| $row \| $rate \| $rate \| $rate \| $ratio \| $ratio \|$" "$TMP/table.md" ||
    fail "row '$row' missing or malformed"
done

# ThinkingViT on Swin-T: ours and the released code only.
run --pairs 1 --model swin-t --released "$TMP/released" >"$TMP/swin.md" 2>"$TMP/swin.log" ||
  { cat "$TMP/swin.log"; fail "bench_compare --model swin-t exited non-zero"; }
cat "$TMP/swin.md"
grep -q "^ThinkingViT Swin-T, " "$TMP/swin.md" || fail "the Swin table is not titled Swin-T"
grep -q "^| row | ours img/s | released img/s | ours/released (min..max) |$" "$TMP/swin.md" ||
  fail "unexpected Swin header"
for row in "stage 0" "stage 1" "elastic tau 0" "train"; do
  grep -Eq "^\| $row \| $rate \| $rate \| $ratio \|$" "$TMP/swin.md" || fail "Swin row '$row' missing or malformed"
done
if run --model swin-t >"$TMP/bad.md" 2>"$TMP/bad.log"; then fail "--model swin-t ran without --released"; fi
grep -q "\-\-model swin-t compares with the released code only: give --released PATH" "$TMP/bad.log" ||
  fail "swin-t without --released: $(cat "$TMP/bad.log")"
if run --model swin-x >"$TMP/bad.md" 2>"$TMP/bad.log"; then fail "--model swin-x was accepted"; fi
[ "$(wc -l <"$TMP/bad.log")" -eq 1 ] && grep -q "\-\-model expects vit, swin-t, swin-s or swin-b, found 'swin-x'" "$TMP/bad.log" ||
  fail "bad --model: $(cat "$TMP/bad.log")"
[ "$(grep -c "^bench_compare: round" "$TMP/log")" -eq 2 ] || fail "expected 2 rounds in the log"

run --pairs 3 --max-seconds 1 >"$TMP/short.md" 2>"$TMP/short.log" || { cat "$TMP/short.log"; fail "--max-seconds run exited non-zero"; }
grep -q "stopping after 1 of 3 rounds (--max-seconds 1)" "$TMP/short.log" || fail "--max-seconds did not stop"
grep -q "1 interleaved rounds" "$TMP/short.md" || fail "the short table does not say 1 round"

if run --pairs x >"$TMP/bad.md" 2>"$TMP/bad.log"; then fail "--pairs x was accepted"; fi
[ "$(wc -l <"$TMP/bad.log")" -eq 1 ] && grep -q "\-\-pairs expects a count >= 1, found 'x'" "$TMP/bad.log" ||
  fail "bad --pairs: $(cat "$TMP/bad.log")"
[ ! -s "$TMP/bad.md" ] || fail "bad --pairs wrote a table"
echo "bench_compare: ok"
