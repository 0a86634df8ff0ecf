#!/usr/bin/env bash
# The one command a GPU host runs: builds thinkingvit against the host's own torch (python3's,
# CUDA, cuDNN and its NCCL), runs the CUDA tests (ctest label `cuda`), benchmarks the released
# 3H->6H shape (eager and with CUDA graphs, a bf16 profile), runs it side by side with the PyTorch
# implementations, and prints one summary. It keeps to BUDGET seconds: the side-by-side rounds
# take what the build, tests and benchmarks leave (at least one round, or none when under a
# minute is left), so that the summary prints inside a device's 10-minute command limit. Only
# the binary and the CUDA tests are built (not the CPU tests or the fuzz replays). A build without
# NCCL fails the check; the CUDA tests include a one-rank NCCL group and GradientReducer.
#
#   scripts/gpu_check.sh            # summary on stdout, files in $OUT_DIR
#
#   DEPS          .deb files from scripts/gpu_deps.sh (default .gpu-deps), unpacked into a
#                 private prefix when present: for hosts without yaml-cpp, spdlog, CLI11, GTest
#   TORCH_PYTHON  the Python whose torch to build against (default python3)
#   BUILD_DIR     (default build-gpu)   JOBS (default: cores)   OUT_DIR (default gpu-check)
#   BUDGET        seconds for the whole check (default 540)
#   COMPARE=0     skip the side-by-side run against the PyTorch implementations
#   PAIRS         its interleaved rounds at most (default 3)   COMPILE=0: without torch.compile
#   RELEASED      a checkout of ds-kiel/ThinkingViT to add the released code (its vendored timm
#                 also needs torchvision, pillow, pyyaml and safetensors in that Python)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
py=${TORCH_PYTHON:-python3}
deps=${DEPS:-.gpu-deps}
build=${BUILD_DIR:-build-gpu}
jobs=${JOBS:-$(nproc)}
out=${OUT_DIR:-gpu-check}
mkdir -p "$out"
log="$out/gpu_check.log"
: >"$log"
say() { echo "gpu_check: $*" | tee -a "$log"; }

extra_prefix=""
if compgen -G "$deps/*.deb" >/dev/null; then
  prefix=${TMPDIR:-/tmp}/thinkingvit-deps
  mkdir -p "$prefix"
  for f in "$deps"/*.deb; do
    dpkg-deb -x "$f" "$prefix" 2>/dev/null || (cd "$prefix" && ar p "$OLDPWD/$f" data.tar.xz | tar xJ)
  done
  extra_prefix=";$prefix/usr"
  export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # libjpeg62-turbo-dev keeps jconfig.h in the multiarch folder, which FindJPEG does not add.
  export CPATH="$prefix/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
  say "C++ dependencies unpacked from $deps into $prefix"
fi

torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
say "host: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
say "torch: $("$py" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())')"
gpu_visible=0
"$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' && gpu_visible=1

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
say "configure + build ($build, $jobs jobs)"
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix$extra_prefix" -DTorch_DIR="$torch_prefix/Torch" \
  -DTHINKINGVIT_PYTHON="$py" >>"$log" 2>&1 || { tail -40 "$log"; exit 1; }
cmake --build "$build" -j "$jobs" --target thinkingvit thinkingvit_cuda_tests >>"$log" 2>&1 ||
  { grep -E "error|FAILED" "$log" | head -40; exit 1; }
built=$(date +%s)
version=$("$build/thinkingvit" --version)
# Multi-GPU training needs NCCL: a build without it is a failed check, not a skipped test.
case $version in
  *"without NCCL"* | *", cpu, "*) say "FAILED: this build has no NCCL process group: $version"; exit 1 ;;
esac
say "built in $((built - start)) s: $version"

say "CUDA tests (ctest -L cuda)"
tests_rc=0
(cd "$build" && ctest -L cuda --output-on-failure --timeout 300) >"$out/cuda_tests.log" 2>&1 || tests_rc=$?
tested=$(date +%s)

say "benchmark: thinkingvit_3h_6h, random weights, batch 64 and 256, fp32 (full fp32 matmuls) and bf16, eager and CUDA graphs"
bench_rc=0
common=("$build/thinkingvit" bench --preset thinkingvit_3h_6h --device cuda --taus 0 --warmup 3)
# CLI11 appends a repeated list option: each run names its batch sizes and precisions once.
# shellcheck disable=SC2054 # the commas belong to the flags
bench=("${common[@]}" --batch-sizes 64,256 --precision bf16,fp32 --stop-shares 0.5 --reps 10 --peak)
"${bench[@]}" --train --output "$out/bench.md" >"$out/bench.log" 2>&1 || bench_rc=$?
"${bench[@]}" --cuda-graphs --output "$out/bench_graphs.md" >"$out/bench_graphs.log" 2>&1 || bench_rc=$?
"${common[@]}" --batch-sizes 256 --precision bf16 --reps 3 --profile "$out/profile" \
  >"$out/profile.log" 2>&1 || bench_rc=$?
compare_rc=0
left=$((${BUDGET:-540} - ($(date +%s) - start) - 20))  # 20 s for the summary
if [[ ${COMPARE:-1} != 0 && $gpu_visible -eq 1 && $left -lt 60 ]]; then
  say "side by side: skipped, ${left} s left of BUDGET=${BUDGET:-540}"
elif [[ ${COMPARE:-1} != 0 && $gpu_visible -eq 1 ]]; then
  say "side by side: bf16, batch 256, up to ${PAIRS:-3} rounds in ${left} s (ours eager and with CUDA graphs)"
  flags=(--device cuda --batch 256 --precision bf16 --taus 0 --pairs "${PAIRS:-3}" --reps 20 --warmup 5
         --graphs --max-seconds "$left")
  [[ ${COMPILE:-1} != 0 ]] && flags+=(--compile)
  [[ -n ${RELEASED:-} ]] && flags+=(--released "$RELEASED")
  PYTHON=$py THINKINGVIT_BIN="$build/thinkingvit" \
    scripts/bench_compare.sh "${flags[@]}" >"$out/compare.md" 2>"$out/compare.log" || compare_rc=$?
fi
done_at=$(date +%s)

{
  echo
  echo "== thinkingvit GPU check"
  echo "$version"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
  echo "build $((built - start)) s, CUDA tests $((tested - built)) s, bench $((done_at - tested)) s, total $((done_at - start)) s"
  echo "-- CUDA tests (rc $tests_rc)"
  grep -E "tests passed|Passed|Failed|Skipped|\\*\\*\\*" "$out/cuda_tests.log" | sed 's/^/  /' || true
  echo "-- benchmark (rc $bench_rc)"
  for f in bench bench_graphs; do
    if [ -f "$out/$f.md" ]; then cat "$out/$f.md"; else tail -5 "$out/$f.log"; fi
  done
  [ -f "$out/profile/ops.md" ] && head -20 "$out/profile/ops.md"
  echo "-- side by side (rc $compare_rc)"
  [ -f "$out/compare.md" ] && cat "$out/compare.md"
  [ -f "$out/compare.log" ] && { grep -E "stopping|Error|error" "$out/compare.log" || true; } | head -5
  [ "$gpu_visible" -eq 1 ] || echo "NO GPU VISIBLE: the CUDA tests skipped themselves; nothing was checked on a GPU"
} | tee -a "$log"
[ "$gpu_visible" -eq 1 ] && [ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$compare_rc" -eq 0 ]
