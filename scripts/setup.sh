#!/usr/bin/env bash
# Installs what the build needs, then configures and builds thinkingvit in Release. Idempotent: a
# second run downloads nothing and only rebuilds what changed.
#
# LibTorch comes from a Python torch 2.x:
#   - the torch of `python3` when it imports and is 2.5 or newer (a GPU host's own torch);
#   - else the pinned wheel torch==$TORCH_PIN from PyPI (a CUDA 13 build: its LibTorch carries
#     cuBLAS, cuDNN and NCCL), installed once into a virtual environment outside the repository,
#     $THINKINGVIT_CACHE/torch-$TORCH_PIN (default ~/.cache/thinkingvit), kept across runs.
# Where nvcc is found the build compiles and links the CUDA, cuDNN and NCCL code; elsewhere the
# same set-up builds a CPU binary against the wheel's CPU libraries.
#
#   BUILD_DIR          build folder (default: build)
#   JOBS               parallel compile jobs (default: number of cores)
#   THINKINGVIT_CACHE  where the pinned torch lives (default: ~/.cache/thinkingvit)
#   TORCH_PYTHON       use this Python's torch (skips the search above)
#   CMAKE_ARGS         more cmake arguments, after the defaults (scripts/fuzz.sh sets them)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
TORCH_PIN=2.11.0  # CUDA 13 wheel on PyPI, the same torch as the GPU host's
CACHE=${THINKINGVIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thinkingvit}
PACKAGES=(
  build-essential cmake ninja-build ccache zlib1g-dev python3-venv
  libopencv-dev libjpeg-dev libyaml-cpp-dev libspdlog-dev libcli11-dev libgtest-dev nlohmann-json3-dev
  gnuplot-nox dataset-fashion-mnist shellcheck slurm-wlm munge libcpp-httplib-dev curl
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# torch >= 2.5 importable by $1?
torch_ok() {
  "$1" - <<'EOF' 2>/dev/null
import sys, torch
major, minor = (int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 5) else 1)
EOF
}

py=${TORCH_PYTHON:-}
if [ -z "$py" ]; then
  if command -v python3 >/dev/null && torch_ok python3; then
    py=$(command -v python3)
  else
    venv=$CACHE/torch-$TORCH_PIN
    # .complete marks a finished install: an interrupted one is removed and done again.
    if [ ! -f "$venv/.complete" ] || ! torch_ok "$venv/bin/python"; then
      echo "setup: installing torch==$TORCH_PIN into $venv (once; later runs reuse it)"
      base_py=python3
      "$base_py" -c 'import venv, ensurepip' 2>/dev/null || base_py=/usr/bin/python3
      rm -rf "$venv"
      "$base_py" -m venv "$venv"
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_PIN" numpy
      touch "$venv/.complete"
    fi
    py=$venv/bin/python
  fi
fi
torch_ok "$py" || { echo "setup: $py has no torch >= 2.5" >&2; exit 1; }
prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
echo "setup: LibTorch $("$py" -c 'import torch; print(torch.__version__)') from $prefix"

# CUDA code is built where nvcc's major version is the one this LibTorch was built with.
cuda_flag=()
if command -v nvcc >/dev/null; then
  toolkit=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
  built=$("$py" -c 'import torch; print((torch.version.cuda or "none").split(".")[0])')
  if [ "$toolkit" != "$built" ]; then
    echo "setup: nvcc is CUDA $toolkit but this LibTorch was built for CUDA $built: building the CPU binary" >&2
    cuda_flag=(-DTHINKINGVIT_CUDA=OFF
      "-DTHINKINGVIT_CPU_ONLY_REASON=scripts/setup.sh found nvcc for CUDA $toolkit, but LibTorch $("$py" -c 'import torch; print(torch.__version__)') is built for CUDA $built")
  else
    cuda_flag=(-DTHINKINGVIT_CUDA=ON)
  fi
fi

generator=()
[ -f "$BUILD_DIR/CMakeCache.txt" ] || generator=(-G Ninja)
read -r -a extra_args <<<"${CMAKE_ARGS:-}"
cmake -S . -B "$BUILD_DIR" "${generator[@]}" "${cuda_flag[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DTorch_DIR="$prefix/Torch" -DTHINKINGVIT_PYTHON="$py" \
  "${extra_args[@]}"
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "setup: built $BUILD_DIR/thinkingvit"
