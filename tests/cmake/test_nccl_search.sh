#!/usr/bin/env bash
# scripts/cmake/thinkingvit_nccl.cmake against fake NCCL installs laid out as the real ones are:
# the nvidia-nccl pip wheel (nvidia/nccl and nvidia/cu13), NCCL_ROOT / NCCL_HOME /
# NCCL_INCLUDE_DIR+NCCL_LIB_DIR, conda, a CUDA toolkit carrying its own NCCL (as on these
# machines: include/, lib/, lib64 -> lib, targets/<arch>/ -> ../..), an NVIDIA-repository toolkit
# (targets/<arch>/ only), and the system as Debian's libnccl-dev and NGC containers have it
# (include/, lib/<multiarch>/). Each has a tiny nccl.h with version defines and an empty
# libnccl.so.2. A throwaway CMake project (no LibTorch, no compiler) includes the module and
# prints what it found; the test checks the folder, version and source of each, the precedence
# (NCCL_ROOT first), and that a version mismatch, a wrong NCCL_ROOT and no NCCL at all fail with
# the expected messages. Where this machine's CUDA toolkit has an NCCL, that one is found too.
#
#   tests/cmake/test_nccl_search.sh [MODULE [CMAKE]]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
module=${1:-$here/../../scripts/cmake/thinkingvit_nccl.cmake}
cmake=${2:-cmake}
module=$(cd "$(dirname "$module")" && pwd)/$(basename "$module")
[ -f "$module" ] || { echo "no module at $module" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tvit-nccl-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
multiarch="$(uname -m)-linux-gnu"
case "$(uname -m)" in
  x86_64) targets=x86_64-linux ;;
  aarch64) targets=sbsa-linux ;;
  *) targets="$(uname -m)-linux" ;;
esac

# fake_nccl PREFIX VERSION [INCLUDE_SUBDIR [LIB_SUBDIR [LIB_NAME]]]: nccl.h and an empty library.
# VERSION "none" writes a header without version defines; "nocode" suffix leaves out
# NCCL_VERSION_CODE (NCCL before 2.9 computed it only through NCCL_VERSION()).
fake_nccl() {
  local prefix=$1 version=$2 inc=${3:-include} lib=${4:-lib} name=${5:-libnccl.so.2}
  mkdir -p "$prefix/$inc" "$prefix/$lib"
  : >"$prefix/$lib/$name"
  if [ "$version" = none ]; then
    printf '#ifndef NCCL_H_\n#define NCCL_H_\n#endif\n' >"$prefix/$inc/nccl.h"
    return
  fi
  local code=yes
  case "$version" in *nocode) code=no; version=${version%nocode} ;; esac
  local major minor patch
  IFS=. read -r major minor patch <<<"$version"
  {
    echo '#ifndef NCCL_H_'
    echo '#define NCCL_H_'
    echo "#define NCCL_MAJOR $major"
    echo "#define NCCL_MINOR $minor"
    echo "#define NCCL_PATCH $patch"
    echo '#define NCCL_SUFFIX ""'
    [ "$code" = yes ] && echo "#define NCCL_VERSION_CODE $((major * 10000 + minor * 100 + patch))"
    echo '#define NCCL_VERSION(X,Y,Z) (((X) <= 2 && (Y) <= 8) ? (X) * 1000 + (Y) * 100 + (Z) : (X) * 10000 + (Y) * 100 + (Z))'
    echo '#endif'
  } >"$prefix/$inc/nccl.h"
}

# torch_metadata SITE_PACKAGES NCCL_VERSION: torch's dist-info, pinning nvidia-nccl-cu13.
torch_metadata() {
  mkdir -p "$1/torch-2.11.0.dist-info"
  cat >"$1/torch-2.11.0.dist-info/METADATA" <<EOF
Metadata-Version: 2.4
Name: torch
Version: 2.11.0
Requires-Dist: filelock
Requires-Dist: nvidia-cudnn-cu13==9.19.0.56; platform_system == "Linux"
Requires-Dist: nvidia-nccl-cu13==$2; platform_system == "Linux"
Requires-Dist: triton==3.6.0; platform_system == "Linux"
EOF
}

# ---- the layouts ----
wheel=$tmp/venv/lib/python3.11/site-packages                  # pip: nvidia-nccl-cu13
fake_nccl "$wheel/nvidia/nccl" 2.28.9
mkdir -p "$wheel/nvidia/cu13/include" "$wheel/nvidia/cu13/lib"  # the toolkit wheels, no NCCL
torch_metadata "$wheel" 2.28.9
wheel_cu13=$tmp/venv-cu13/lib/python3.12/site-packages        # NCCL inside nvidia/cu13
fake_nccl "$wheel_cu13/nvidia/cu13" 2.28.8
torch_metadata "$wheel_cu13" 2.28.9
no_pin=$tmp/venv-nopin/site-packages                          # a torch without the pin
mkdir -p "$no_pin"
fake_nccl "$tmp/nccl-root" 2.28.1 include lib64               # NCCL_ROOT (lib64/)
fake_nccl "$tmp/nccl-root-env" 2.28.2
fake_nccl "$tmp/nccl-home" 2.28.3
fake_nccl "$tmp/nccl-split/headers" 2.28.0 . .                # NCCL_INCLUDE_DIR / NCCL_LIB_DIR
mkdir -p "$tmp/nccl-split/libs"
mv "$tmp/nccl-split/headers/libnccl.so.2" "$tmp/nccl-split/libs/"
fake_nccl "$tmp/conda" 2.28.4 include lib libnccl.so          # conda-forge's nccl
fake_nccl "$tmp/cuda-13.0" 2.28.6                             # the toolkit here: lib64 -> lib,
ln -s lib "$tmp/cuda-13.0/lib64"                              # targets/<arch>/ -> ../..
mkdir -p "$tmp/cuda-13.0/targets/$targets"
ln -s ../../include "$tmp/cuda-13.0/targets/$targets/include"
ln -s ../../lib "$tmp/cuda-13.0/targets/$targets/lib"
ln -s cuda-13.0 "$tmp/cuda"
fake_nccl "$tmp/cuda-12.9" 2.28.5 "targets/$targets/include" "targets/$targets/lib"
fake_nccl "$tmp/ngc/usr" 2.28.7 include "lib/$multiarch"      # NGC / libnccl-dev
fake_nccl "$tmp/old" 2.27.3                                   # another minor release
fake_nccl "$tmp/ancient" 2.8.4nocode                          # NCCL_VERSION_CODE computed
fake_nccl "$tmp/noversion" none
mkdir -p "$tmp/header-only/include" "$tmp/empty" "$tmp/empty-cuda"
cp "$tmp/old/include/nccl.h" "$tmp/header-only/include/"

# ---- the throwaway project ----
mkdir -p "$tmp/proj"
cat >"$tmp/proj/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.18)
project(nccl_search_test LANGUAGES NONE)
include("$module")
thinkingvit_find_nccl(NCCL REQUIRED TORCH_SITE_PACKAGES "\${SITE_PACKAGES}")
message(STATUS "RESULT|\${NCCL_SOURCE}|\${NCCL_INCLUDE_DIR}|\${NCCL_LIBRARY}|\${NCCL_VERSION}|\${NCCL_VERSION_CODE}|\${NCCL_TORCH_VERSION}|")
EOF

failures=0
n=0
# configure NAME [VAR=VALUE...] -- [CMAKE ARGS...]: runs the project with a clean environment
# (the NCCL, conda and CUDA variables unset), the fake prefixes only, and the given overrides.
configure() {
  local name=$1
  shift
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  n=$((n + 1))
  rm -rf "$tmp/build"
  set +e
  env -u NCCL_ROOT -u NCCL_HOME -u NCCL_INCLUDE_DIR -u NCCL_LIB_DIR -u CONDA_PREFIX \
    -u CUDA_HOME -u CUDA_PATH -u CUDAToolkit_ROOT "${envs[@]}" \
    "$cmake" -S "$tmp/proj" -B "$tmp/build" "$@" >"$tmp/out" 2>&1
  rc=$?
  set -e
  # CMake wraps messages: join the lines and squeeze the spaces before matching.
  out=$(tr '\n' ' ' <"$tmp/out" | tr -s ' ')
  log_name=$name
}

fail() {
  echo "FAIL [$log_name]: $*"
  sed 's/^/    /' "$tmp/out"
  failures=$((failures + 1))
}

# expect_found SOURCE INCLUDE_DIR VERSION [MORE TEXT THE OUTPUT MUST HOLD...]
expect_found() {
  local source=$1 include=$2 version=$3
  shift 3
  if [ "$rc" -ne 0 ]; then fail "configure failed (rc $rc)"; return; fi
  local line
  line=$(grep -o 'RESULT|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|' "$tmp/out" || true)
  local got_source got_include got_lib got_version
  IFS='|' read -r _ got_source got_include got_lib got_version _ _ <<<"$line"
  [ "$got_source" = "$source" ] || { fail "source '$got_source', expected '$source'"; return; }
  [ "$got_include" = "$include" ] || { fail "include '$got_include', expected '$include'"; return; }
  [ "$got_version" = "$version" ] || { fail "version '$got_version', expected '$version'"; return; }
  [ -f "$got_lib" ] || { fail "library '$got_lib' is no file"; return; }
  local text
  for text in "$@"; do
    [[ $out == *"$text"* ]] || { fail "output lacks '$text'"; return; }
  done
  echo "ok   [$log_name]: NCCL $got_version from $got_source ($got_include)"
}

# expect_error TEXT...: configuring failed, and the output holds every TEXT.
expect_error() {
  if [ "$rc" -eq 0 ]; then fail "configure succeeded, expected an error"; return; fi
  local text
  for text in "$@"; do
    [[ $out == *"$text"* ]] || { fail "error lacks '$text'"; return; }
  done
  echo "ok   [$log_name]: fails as expected"
}

all_cuda="-DTHINKINGVIT_NCCL_CUDA_PREFIXES=$tmp/cuda;$tmp/cuda-13.0;$tmp/cuda-12.9"
all_system="-DTHINKINGVIT_NCCL_SYSTEM_PREFIXES=$tmp/ngc/usr"
no_cuda="-DTHINKINGVIT_NCCL_CUDA_PREFIXES="
no_system="-DTHINKINGVIT_NCCL_SYSTEM_PREFIXES="

# ---- each layout on its own ----
configure "pip wheel (nvidia/nccl)" -- -DSITE_PACKAGES="$wheel" "$no_cuda" "$no_system"
expect_found "pip wheel" "$wheel/nvidia/nccl/include" 2.28.9 "NCCL_VERSION_CODE 22809" \
  "matches LibTorch's (nvidia-nccl-cu13 pin in $wheel/torch-2.11.0.dist-info/METADATA)"

configure "pip wheel (nvidia/cu13)" -- -DSITE_PACKAGES="$wheel_cu13" "$no_cuda" "$no_system"
expect_found "pip wheel" "$wheel_cu13/nvidia/cu13/include" 2.28.8 \
  "LibTorch's is 2.28.9" "patch releases differ"

configure "NCCL_ROOT (CMake variable, lib64/)" -- -DNCCL_ROOT="$tmp/nccl-root" "$no_cuda" "$no_system"
expect_found "NCCL_ROOT" "$tmp/nccl-root/include" 2.28.1 "$tmp/nccl-root/lib64/libnccl.so.2"

configure "NCCL_ROOT (environment)" NCCL_ROOT="$tmp/nccl-root-env" -- "$no_cuda" "$no_system"
expect_found "ENV{NCCL_ROOT}" "$tmp/nccl-root-env/include" 2.28.2

configure "NCCL_INCLUDE_DIR + NCCL_LIB_DIR" NCCL_INCLUDE_DIR="$tmp/nccl-split/headers" \
  NCCL_LIB_DIR="$tmp/nccl-split/libs" -- "$no_cuda" "$no_system"
expect_found "NCCL_INCLUDE_DIR/NCCL_LIB_DIR" "$tmp/nccl-split/headers" 2.28.0

configure "NCCL_HOME" NCCL_HOME="$tmp/nccl-home" -- "$no_cuda" "$no_system"
expect_found "ENV{NCCL_HOME}" "$tmp/nccl-home/include" 2.28.3

configure "conda (lib/libnccl.so)" CONDA_PREFIX="$tmp/conda" -- "$no_cuda" "$no_system"
expect_found "conda" "$tmp/conda/include" 2.28.4 "$tmp/conda/lib/libnccl.so"

configure "CUDA toolkit, this machine's layout" -- "-DTHINKINGVIT_NCCL_CUDA_PREFIXES=$tmp/cuda;$tmp/cuda-13.0" "$no_system"
expect_found "CUDA toolkit" "$tmp/cuda/include" 2.28.6
[[ $out == *"cuda-13.0 ("* ]] && fail "the same toolkit was searched twice (cuda -> cuda-13.0)"

configure "CUDA toolkit, targets/$targets only" -- "-DTHINKINGVIT_NCCL_CUDA_PREFIXES=$tmp/cuda-12.9" "$no_system"
expect_found "CUDA toolkit" "$tmp/cuda-12.9/targets/$targets/include" 2.28.5

configure "CUDA toolkit from CUDA_HOME" CUDA_HOME="$tmp/cuda-12.9" -- "$no_system"
# The default toolkit list: CUDA_HOME comes before /usr/local/cuda*.
expect_found "CUDA toolkit" "$tmp/cuda-12.9/targets/$targets/include" 2.28.5

configure "system, NGC / libnccl-dev layout" -- "$no_cuda" "$all_system"
expect_found "system" "$tmp/ngc/usr/include" 2.28.7 "$tmp/ngc/usr/lib/$multiarch/libnccl.so.2"

# ---- precedence: each place hides the ones after it ----
configure "precedence: NCCL_ROOT first" NCCL_ROOT="$tmp/nccl-root-env" NCCL_HOME="$tmp/nccl-home" \
  CONDA_PREFIX="$tmp/conda" -- -DNCCL_ROOT="$tmp/nccl-root" -DSITE_PACKAGES="$wheel" "$all_cuda" "$all_system"
expect_found "NCCL_ROOT" "$tmp/nccl-root/include" 2.28.1
configure "precedence: then ENV{NCCL_ROOT}" NCCL_ROOT="$tmp/nccl-root-env" NCCL_HOME="$tmp/nccl-home" \
  CONDA_PREFIX="$tmp/conda" -- -DSITE_PACKAGES="$wheel" "$all_cuda" "$all_system"
expect_found "ENV{NCCL_ROOT}" "$tmp/nccl-root-env/include" 2.28.2
configure "precedence: then NCCL_HOME" NCCL_HOME="$tmp/nccl-home" CONDA_PREFIX="$tmp/conda" -- \
  -DSITE_PACKAGES="$wheel" "$all_cuda" "$all_system"
expect_found "ENV{NCCL_HOME}" "$tmp/nccl-home/include" 2.28.3
configure "precedence: then the pip wheel" CONDA_PREFIX="$tmp/conda" -- -DSITE_PACKAGES="$wheel" \
  "$all_cuda" "$all_system"
expect_found "pip wheel" "$wheel/nvidia/nccl/include" 2.28.9
configure "precedence: then conda" CONDA_PREFIX="$tmp/conda" -- -DSITE_PACKAGES="$no_pin" \
  "$all_cuda" "$all_system"
expect_found "conda" "$tmp/conda/include" 2.28.4
configure "precedence: then the CUDA toolkit" -- -DSITE_PACKAGES="$no_pin" "$all_cuda" "$all_system"
expect_found "CUDA toolkit" "$tmp/cuda/include" 2.28.6
configure "precedence: then the system" -- -DSITE_PACKAGES="$no_pin" "$no_cuda" "$all_system"
expect_found "system" "$tmp/ngc/usr/include" 2.28.7

# ---- versions ----
configure "mismatch: NCCL 2.27 against torch's 2.28.9 pin" -- -DNCCL_ROOT="$tmp/old" \
  -DSITE_PACKAGES="$wheel" "$no_cuda" "$no_system"
expect_error "NCCL 2.27.3 was found (NCCL_ROOT: $tmp/old/include/nccl.h, $tmp/old/lib/libnccl.so.2)" \
  "LibTorch was built with NCCL 2.28.9 (nvidia-nccl-cu13 pin in $wheel/torch-2.11.0.dist-info/METADATA)" \
  "ncclConfig_t" "-DTHINKINGVIT_NCCL=OFF"

configure "mismatch in the system NCCL, no wheel NCCL" -- -DSITE_PACKAGES="$wheel_cu13/../nowhere" \
  "$no_cuda" -DTHINKINGVIT_NCCL_SYSTEM_PREFIXES="$tmp/old" -DTHINKINGVIT_TORCH_NCCL_VERSION=2.28
expect_error "NCCL 2.27.3 was found (system: $tmp/old/include/nccl.h" \
  "LibTorch was built with NCCL 2.28 (THINKINGVIT_TORCH_NCCL_VERSION)"

configure "THINKINGVIT_TORCH_NCCL_VERSION overrides the pin" -- -DNCCL_ROOT="$tmp/old" \
  -DSITE_PACKAGES="$wheel" -DTHINKINGVIT_TORCH_NCCL_VERSION=2.27.3 "$no_cuda" "$no_system"
expect_found "NCCL_ROOT" "$tmp/old/include" 2.27.3 "matches LibTorch's (THINKINGVIT_TORCH_NCCL_VERSION)"

configure "no reference version: a STATUS line" -- -DNCCL_ROOT="$tmp/old" -DSITE_PACKAGES="$no_pin" \
  "$no_cuda" "$no_system"
expect_found "NCCL_ROOT" "$tmp/old/include" 2.27.3 "-- thinkingvit: no reference version for LibTorch's NCCL" \
  "set THINKINGVIT_TORCH_NCCL_VERSION"

configure "NCCL_VERSION_CODE computed (NCCL 2.8)" -- -DNCCL_ROOT="$tmp/ancient" "$no_cuda" "$no_system"
expect_found "NCCL_ROOT" "$tmp/ancient/include" 2.8.4 "NCCL_VERSION_CODE 2804"

# ---- what is skipped, and what fails ----
configure "header without library, header without version: skipped" -- -DSITE_PACKAGES="$no_pin" \
  "$no_cuda" "-DTHINKINGVIT_NCCL_SYSTEM_PREFIXES=$tmp/header-only;$tmp/noversion;$tmp/ngc/usr"
expect_found "system" "$tmp/ngc/usr/include" 2.28.7
configure "missing: every place named, and how to point at one" CONDA_PREFIX="$tmp/empty" -- \
  -DSITE_PACKAGES="$wheel_cu13/../nowhere" "-DTHINKINGVIT_NCCL_CUDA_PREFIXES=$tmp/empty-cuda;$tmp/empty" \
  "-DTHINKINGVIT_NCCL_SYSTEM_PREFIXES=$tmp/header-only;$tmp/noversion;$tmp/nonexistent"
expect_error "a CUDA build needs NCCL, and no NCCL was found" "Searched, in this order:" \
  "pip wheel: $wheel_cu13/../nowhere/nvidia/nccl (no such folder)" \
  "conda: $tmp/empty (no nccl.h)" "CUDA toolkit: $tmp/empty-cuda (no nccl.h)" \
  "system: $tmp/header-only (nccl.h in $tmp/header-only/include, but no libnccl.so.2)" \
  "system: $tmp/noversion ($tmp/noversion/include/nccl.h defines no NCCL_MAJOR/MINOR/PATCH)" \
  "system: $tmp/nonexistent (no such folder)" \
  "-DNCCL_ROOT=<prefix>" "-DTHINKINGVIT_NCCL=OFF"
# A folder is searched once, under its first name (here conda's).
[[ $out == *"CUDA toolkit: $tmp/empty "* ]] && fail "$tmp/empty was searched twice"
configure "missing with torch's pin: the wheel to install" -- -DSITE_PACKAGES="$no_pin" "$no_cuda" "$no_system" \
  -DTHINKINGVIT_TORCH_NCCL_VERSION=2.28.9
expect_error "needs NCCL 2.28.9 (the NCCL LibTorch was built with: THINKINGVIT_TORCH_NCCL_VERSION)"
mkdir -p "$no_pin/../pinned"
torch_metadata "$no_pin/../pinned" 2.28.9
configure "missing, pin in METADATA" -- -DSITE_PACKAGES="$no_pin/../pinned" "$no_cuda" "$no_system"
expect_error "pip install nvidia-nccl-cu13==2.28.9"
configure "NCCL_ROOT without NCCL: an error, not a fallback" -- -DNCCL_ROOT="$tmp/empty" \
  -DSITE_PACKAGES="$wheel" "$no_cuda" "$no_system"
expect_error "NCCL_ROOT names no usable NCCL: NCCL_ROOT: $tmp/empty (no nccl.h)" "-DTHINKINGVIT_NCCL=OFF"
configure "NCCL_HOME naming no folder" NCCL_HOME="$tmp/nonexistent" -- -DSITE_PACKAGES="$wheel" "$no_cuda" "$no_system"
expect_error "ENV{NCCL_HOME} names no usable NCCL: ENV{NCCL_HOME}: $tmp/nonexistent (no such folder)"

# ---- this machine's CUDA toolkit, where it carries an NCCL (default toolkit list) ----
real=""
for dir in /usr/local/cuda /usr/local/cuda-*; do
  [ -f "$dir/include/nccl.h" ] || [ -f "$dir/targets/$targets/include/nccl.h" ] || continue
  ls "$dir"/lib*/libnccl.so* "$dir/targets/$targets"/lib/libnccl.so* >/dev/null 2>&1 || continue
  real=$dir
  break
done
if [ -n "$real" ]; then
  header=$real/include/nccl.h
  [ -f "$header" ] || header=$real/targets/$targets/include/nccl.h
  version=$(awk '/#define NCCL_(MAJOR|MINOR|PATCH) /{v = v (v == "" ? "" : ".") $3} END {print v}' "$header")
  configure "this machine's toolkit ($real)" -- -DSITE_PACKAGES="$no_pin" "$no_system"
  expect_found "CUDA toolkit" "$(dirname "$header")" "$version"
else
  echo "skip [this machine's toolkit]: no /usr/local/cuda* holds nccl.h and libnccl.so"
fi

echo "$n configurations, $failures failures"
[ "$failures" -eq 0 ]
