#!/bin/bash
# Python interoperability of the C++ thinkingvit command (CTest: python_interop).
#
#   tests/interop/test_python_interop.sh THINKINGVIT_BIN SCRIPTS_DIR FIXTURES_DIR [PYTHON]
#
# (a) a ThinkingViT-style .pth.tar (state_dict, state_dict_ema with 'module.' keys,
#     pickled argparse args) built from the tiny fixture is converted by
#     pth_to_safetensors.py, run by `thinkingvit infer`, and checked by
#     check_interop.py (strict load_state_dict with the released names + same maths);
# (b) pth_to_safetensors.py --key nope fails with one error line naming 'nope'.
# PYTHON (default python3) is the torch whose LibTorch the build used (scripts/setup.sh passes
# it); exits 77 (skipped) when it has no torch.
set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
  echo "usage: $0 THINKINGVIT_BIN SCRIPTS_DIR FIXTURES_DIR [PYTHON]" >&2
  exit 2
fi
BIN=$1 SCRIPTS=$2 FIXTURES=$3
PY=${4:-python3}

if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "note: $PY cannot import torch (scripts/setup.sh installs one); skipping"
  exit 77
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# A training checkpoint as ThinkingViT's train.py saves it.
"$PY" - "$SCRIPTS" "$FIXTURES/tiny_weights.safetensors" "$TMP/ckpt.pth.tar" <<'PYEOF'
import argparse, sys
sys.path.insert(0, sys.argv[1])
import torch
from safetensors_io import read_safetensors
sd, _ = read_safetensors(sys.argv[2])
torch.save({"epoch": 3, "state_dict": {k: torch.zeros_like(v) for k, v in sd.items()},
            "state_dict_ema": {"module." + k: v for k, v in sd.items()},
            "args": argparse.Namespace(lr=1.0)}, sys.argv[3])
PYEOF

echo "== (a) convert, infer, check"
"$PY" "$SCRIPTS/pth_to_safetensors.py" "$TMP/ckpt.pth.tar" "$TMP/converted.safetensors"
"$BIN" infer --weights "$TMP/converted.safetensors" --head-dim 4 \
  --input "$FIXTURES/tiny_golden.safetensors" --output "$TMP/out.safetensors" --threads 1
"$PY" "$SCRIPTS/check_interop.py" --weights "$TMP/converted.safetensors" \
  --images "$FIXTURES/tiny_golden.safetensors" --outputs "$TMP/out.safetensors" \
  --head-dim 4 --stages 1,2,3

echo "== (b) bad --key"
if "$PY" "$SCRIPTS/pth_to_safetensors.py" "$TMP/ckpt.pth.tar" "$TMP/bad.safetensors" \
    --key nope 2>"$TMP/err"; then
  echo "FAIL: --key nope succeeded" >&2
  exit 1
fi
cat "$TMP/err"
if [ "$(wc -l <"$TMP/err")" -ne 1 ] || ! grep -q "'nope'" "$TMP/err"; then
  echo "FAIL: expected one error line naming 'nope'" >&2
  exit 1
fi
if [ -e "$TMP/bad.safetensors" ]; then
  echo "FAIL: a failed conversion left an output file" >&2
  exit 1
fi
echo "python_interop: OK"
