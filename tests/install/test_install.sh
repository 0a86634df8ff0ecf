#!/bin/bash
# The installed package (CTest: install_consumer): `cmake --install` into a temporary prefix,
# then a separate CMake project finds it with find_package(thinkingvit), builds, loads the tiny
# fixture's weights and runs elastic inference against the golden logits.
#
#   tests/install/test_install.sh BUILD_DIR CONSUMER_DIR FIXTURES_DIR TORCH_PREFIX [CXX]
#
# CXX: the compiler the package was built with (a sanitizer build's runtimes are the compiler's).
set -euo pipefail
BUILD=$1 CONSUMER=$2 FIXTURES=$3 TORCH_PREFIX=$4 CXX_COMPILER=${5:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cmake --install "$BUILD" --prefix "$TMP/prefix" >"$TMP/install.log"
for f in bin/thinkingvit include/thinkingvit/models/elastic_model.h share/thinkingvit/plot_sweep.sh \
    lib/cmake/thinkingvit/thinkingvitConfig.cmake; do
  [ -e "$TMP/prefix/$f" ] || { echo "FAIL: $f not installed" >&2; exit 1; }
done
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
compiler=()
[ -n "$CXX_COMPILER" ] && compiler=(-DCMAKE_CXX_COMPILER="$CXX_COMPILER")
cmake -S "$CONSUMER" -B "$TMP/build" "${generator[@]}" "${compiler[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TMP/prefix;$TORCH_PREFIX" >"$TMP/configure.log" 2>&1 ||
  { cat "$TMP/configure.log"; exit 1; }
cmake --build "$TMP/build" >"$TMP/build.log" 2>&1 || { tail -30 "$TMP/build.log"; exit 1; }
"$TMP/build/consumer" "$FIXTURES/tiny_weights.safetensors" "$FIXTURES/tiny_golden.safetensors" 1.0 4
echo "install_consumer: OK"
