#!/usr/bin/env bash
# Fuzzes every reader of outside data (safetensors, config.json, the YAML config, IDX raw and
# gzip, CIFAR batches, image sniffing and decoding, the class list) with libFuzzer under
# AddressSanitizer + UBSan, SECONDS per target (default 60), all targets at once (JOBS at a
# time). Seeds come from tests/fuzz/corpus/<target>; new inputs go to
# $BUILD_DIR/tests/fuzz/work/<target> and crash inputs to $BUILD_DIR/tests/fuzz/crashes/.
#
#   scripts/fuzz.sh [SECONDS]   fuzz every target
#   scripts/fuzz.sh --suite     the whole test suite under AddressSanitizer + UBSan instead
#
# Builds with clang into BUILD_DIR (default build-fuzz; CPU only), installing clang and its
# runtimes (Debian: clang, libclang-rt-dev) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=fuzz seconds=60
case "${1:-}" in
  "") ;;
  --suite) mode=suite ;;
  *)
    [[ $1 =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS | --suite]: expected seconds per target, found '$1'" >&2; exit 2; }
    seconds=$1
    ;;
esac
export BUILD_DIR=${BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}

if ! command -v clang++ >/dev/null ||
  ! compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; then
  echo "fuzz: installing clang and libclang-rt-dev"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-dev
fi

CC=clang CXX=clang++ \
  CMAKE_ARGS="-DTHINKINGVIT_FUZZ=ON -DTHINKINGVIT_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTHINKINGVIT_FUZZ_SECONDS=$seconds" \
  scripts/setup.sh

# Every sanitizer report ends the run; LibTorch's own allocations at exit are not leaks of ours.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$BUILD_DIR"
if [[ $mode == suite ]]; then
  start=$(date +%s)
  status=0
  OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure -j "$JOBS" -LE fuzz --timeout 1800 || status=$?
  echo "fuzz: the suite under AddressSanitizer + UBSan took $(($(date +%s) - start)) s (status $status)"
  exit "$status"
fi
status=0
ctest --output-on-failure -j "$JOBS" -L fuzz || status=$?
echo "fuzz: ${seconds} s per target; new inputs in $BUILD_DIR/tests/fuzz/work, crashes (if any) in $BUILD_DIR/tests/fuzz/crashes"
exit "$status"
