#!/usr/bin/env bash
# Installs what the build needs (Debian 12 packages, only when missing), then configures and
# builds thinkingvit in Release. Idempotent: a second run only rebuilds what changed.
#   BUILD_DIR  build folder (default: build)
#   JOBS       parallel compile jobs (default: number of cores)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
PACKAGES=(
  build-essential cmake ccache zlib1g-dev
  libtorch-dev libopenblas0-openmp libgloo-dev
  libopencv-dev libjpeg-dev libyaml-cpp-dev libspdlog-dev libcli11-dev libgtest-dev nlohmann-json3-dev
  python3-torch gnuplot-nox dataset-fashion-mnist
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

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "setup: built $BUILD_DIR/thinkingvit"
