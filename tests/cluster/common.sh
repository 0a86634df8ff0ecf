# shellcheck shell=bash
# Shared by the torchrun and Slurm tests: a tiny training job in which every source of
# randomness is on (Mixup / CutMix drawn per rank, drop path, stochastic stage sampling,
# augmentation with workers), an uninterrupted reference run of it on two processes, and the
# bit-for-bit comparison of two run folders.
#
# The caller sets BIN (the thinkingvit binary), ROOT (the checkout), PY (a Python with torch) and
# WORK (a scratch folder).

# 48 images, 2 per rank and step on 2 ranks: 12 steps an epoch, 3 epochs, a checkpoint every 3
# steps. $1: extra YAML appended (e.g. a longer schedule).
write_tiny_config() {
  cat >"$WORK/tiny.yaml" <<YAML
model:
  image_size: 8
  patch_size: 4
  num_classes: 12
  head_dim: 4
  depth: 2
  stages: [1, 2]
  drop_path_rate: 0.1
data:
  dataset: synthetic
  synthetic_size: ${TINY_IMAGES:-48}
  batch_size: 2
  eval_batch_size: 16
  num_workers: 2
augment:
  train:
    size: 8
  eval:
    size: 8
    crop_pct: 1.0
  mix:
    mixup_alpha: 0.8
    cutmix_alpha: 1.0
optimizer:
  lr: 1.0e-3
  lr_base_batch: 4
schedule:
  epochs: ${TINY_EPOCHS:-3}
  warmup_epochs: 0.5
  cooldown_epochs: 0
  per_step: true
sampling:
  mode: stochastic
ema:
  decay: 0.9
checkpoint:
  every_steps: 3
  keep_last: 2
distributed:
  timeout_s: 60
run:
  threads: 1
  log_every_steps: 1
YAML
}

# The reference: the same job on two hand-launched processes, never interrupted.
reference_run() {
  bash "$ROOT/scripts/launch_local.sh" 2 "$BIN" train --config "$WORK/tiny.yaml" \
    --output-dir "$WORK/reference" >"$WORK/reference.log" 2>&1 ||
    fail "the reference run failed: $(tail -3 "$WORK/reference.log")"
}

same_as_reference() {
  "$PY" "$ROOT/tests/cluster/compare_runs.py" "$WORK/reference" "$1" ||
    fail "$1 ended with other weights than the uninterrupted run"
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# $1 must contain the fixed string $2 (a log and a line it must hold).
expect_in() {
  grep -qF -- "$2" "$1" || fail "'$1' lacks '$2'; it ends:$(echo; tail -15 "$1")"
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
