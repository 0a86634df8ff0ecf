#!/usr/bin/env bash
# On a Debian 12 machine with apt: downloads the .deb files of the small C++ dependencies
# (yaml-cpp, spdlog, fmt, CLI11, nlohmann-json, GoogleTest, zlib and libjpeg headers) into DIR
# (default .gpu-deps, git-ignored), for scripts/gpu_check.sh on a GPU host without a package
# registry. Copy DIR along with the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu-deps}
mkdir -p "$dir"
cd "$dir"
apt-get download libyaml-cpp-dev libyaml-cpp0.7 libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 \
  libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev zlib1g-dev libjpeg62-turbo-dev \
  libjpeg62-turbo libjpeg-dev 2>&1 | grep -v "^W: Download is performed unsandboxed" || true
ls -1 ./*.deb
