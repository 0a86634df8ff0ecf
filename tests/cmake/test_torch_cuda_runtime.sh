#!/usr/bin/env bash
# scripts/cmake/thinkingvit_torch_cuda.cmake (a CUDA LibTorch configured without nvcc) against fake
# torch wheels laid out as PyPI's are: torch/share/cmake/{Torch,Caffe2}, nvidia/cu13/{include,lib}
# for CUDA 13, nvidia/cuda_runtime plus one folder per library for CUDA 12. A throwaway CMake
# project (no compiler) calls the function and prints what it found; the test checks the runtime
# folder, library, version and include folders, and the reasons given for a CPU LibTorch, a wheel
# without the CUDA runtime, and one without the crt / CCCL headers (with the pip command to run).
#
#   tests/cmake/test_torch_cuda_runtime.sh [MODULE [CMAKE]]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
module=${1:-$here/../../scripts/cmake/thinkingvit_torch_cuda.cmake}
cmake=${2:-cmake}
module=$(cd "$(dirname "$module")" && pwd)/$(basename "$module")
[ -f "$module" ] || { echo "no module at $module" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tvit-cudart-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# fake_torch SITE_PACKAGES CUDA(ON|OFF): torch's CMake files, its libraries and its METADATA.
fake_torch() {
  mkdir -p "$1/torch/share/cmake/Torch" "$1/torch/share/cmake/Caffe2" "$1/torch/lib" "$1/torch-2.11.0.dist-info"
  : >"$1/torch/share/cmake/Torch/TorchConfig.cmake"
  # As a CPU wheel's has it too: the line sits under if(OFF) there.
  printf 'if(%s)\n  set(CAFFE2_USE_CUDA ON)\nendif()\n' "$2" >"$1/torch/share/cmake/Caffe2/Caffe2Config.cmake"
  : >"$1/torch/lib/libtorch_cpu.so"
  [ "$2" = ON ] && : >"$1/torch/lib/libtorch_cuda.so"
  printf 'Name: torch\nRequires-Dist: cuda-toolkit[cublas,cudart,nvrtc]==13.0.2; platform_system == "Linux"\n' \
    >"$1/torch-2.11.0.dist-info/METADATA"
}
# fake_runtime DIR CODE [crt] [cccl]: cuda_runtime_api.h, libcudart.so.<major>, the host headers.
fake_runtime() {
  local dir=$1 code=$2
  shift 2
  mkdir -p "$dir/include" "$dir/lib"
  echo "#define CUDART_VERSION  $code" >"$dir/include/cuda_runtime_api.h"
  : >"$dir/lib/libcudart.so.$((code / 1000))"
  : >"$dir/lib/libcudart_static.a"
  local part
  for part in "$@"; do
    case $part in
      crt) mkdir -p "$dir/include/crt" && : >"$dir/include/crt/host_config.h" ;;
      cccl) mkdir -p "$dir/include/nv" && : >"$dir/include/nv/target" ;;
    esac
  done
}

cu13=$tmp/cu13/site-packages
fake_torch "$cu13" ON
fake_runtime "$cu13/nvidia/cu13" 13000 crt cccl
mkdir -p "$cu13/nvidia/cudnn/include" "$cu13/nvidia/nccl/include" "$cu13/nvidia_cuda_runtime-13.0.96.dist-info"
cu12=$tmp/cu12/site-packages
fake_torch "$cu12" ON
fake_runtime "$cu12/nvidia/cuda_runtime" 12080 crt cccl
mkdir -p "$cu12/nvidia/cublas/include" "$cu12/nvidia/cusparse/include"
no_crt=$tmp/nocrt/site-packages
fake_torch "$no_crt" ON
fake_runtime "$no_crt/nvidia/cu13" 13000
cpu=$tmp/cpu/site-packages
fake_torch "$cpu" OFF
no_runtime=$tmp/noruntime/site-packages
fake_torch "$no_runtime" ON

mkdir -p "$tmp/proj"
cat >"$tmp/proj/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.18)
project(cudart_test LANGUAGES NONE)
include("$module")
thinkingvit_torch_cuda_runtime(R TORCH_DIR "\${TORCH_DIR}")
set(_inc "no torch::cudart")
if(TARGET torch::cudart)
  get_target_property(_inc torch::cudart INTERFACE_INCLUDE_DIRECTORIES)
endif()
message(STATUS "RESULT|\${R_FOUND}|\${R_ROOT}|\${R_LIBRARY}|\${R_VERSION}|\${R_INCLUDE_DIRS}|\${_inc}|")
message(STATUS "REASON|\${R_REASON}|")
EOF

failures=0
check() {  # check NAME SITE_PACKAGES TEXT...: the output holds every TEXT.
  local name=$1 sp=$2
  shift 2
  rm -rf "$tmp/build"
  if ! "$cmake" -S "$tmp/proj" -B "$tmp/build" -DTORCH_DIR="$sp/torch/share/cmake/Torch" >"$tmp/out" 2>&1; then
    echo "FAIL [$name]: configure failed"
    sed 's/^/    /' "$tmp/out"
    failures=$((failures + 1))
    return
  fi
  local out text
  out=$(tr '\n' ' ' <"$tmp/out")
  for text in "$@"; do
    if [[ $out != *"$text"* ]]; then
      echo "FAIL [$name]: output lacks '$text'"
      sed 's/^/    /' "$tmp/out"
      failures=$((failures + 1))
      return
    fi
  done
  echo "ok   [$name]"
}

check "CUDA 13 wheel (nvidia/cu13)" "$cu13" \
  "RESULT|TRUE|$cu13/nvidia/cu13|$cu13/nvidia/cu13/lib/libcudart.so.13|13.0.96|$cu13/nvidia/cu13/include;$cu13/nvidia/cudnn/include|$cu13/nvidia/cu13/include;$cu13/nvidia/cudnn/include|"
check "CUDA 12 wheels (nvidia/cuda_runtime, a folder per library)" "$cu12" \
  "RESULT|TRUE|$cu12/nvidia/cuda_runtime|$cu12/nvidia/cuda_runtime/lib/libcudart.so.12|12.8|$cu12/nvidia/cuda_runtime/include;$cu12/nvidia/cublas/include;$cu12/nvidia/cusparse/include|"
check "no crt / CCCL headers: the pip command" "$no_crt" "RESULT|FALSE|" \
  "|no torch::cudart|" "lack crt/host_config.h and nv/target" "pip install \"cuda-toolkit[crt,cccl]==13.0.2\""
check "a CPU LibTorch" "$cpu" "RESULT|FALSE|" "|no torch::cudart|" "is not a CUDA build"
check "no CUDA runtime wheel" "$no_runtime" "RESULT|FALSE|" "there is no CUDA runtime wheel"

echo "$failures failures"
[ "$failures" -eq 0 ]
