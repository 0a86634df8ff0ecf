#!/usr/bin/env bash
# Set-up (packages, build), then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd "${BUILD_DIR:-build}"
OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure -j "${JOBS:-$(nproc)}"
