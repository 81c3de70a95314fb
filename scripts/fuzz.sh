#!/usr/bin/env bash
# Builds every libFuzzer target (clang, ASan + UBSan) and runs each for SECONDS (default 60) from
# its seed corpus in fuzz/corpus/<name> (if any). New inputs go to /tmp, never into the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
scripts/setup.sh >/dev/null 2>&1  # packages (clang, libclang-rt) and a normal build
BUILD=${DSEEK_FUZZ_BUILD_DIR:-build-fuzz}
[ -f "$BUILD/build.ninja" ] || CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DDSEEK_BUILD_FUZZ=ON >/dev/null
targets=()
for src in fuzz/*_fuzz.cpp; do targets+=("$(basename "$src" .cpp)"); done
cmake --build "$BUILD" --target "${targets[@]}"
mkdir -p /tmp/dseek-fuzz
for src in fuzz/*_fuzz.cpp; do
  name=$(basename "$src" .cpp)
  work=/tmp/dseek-fuzz/$name
  mkdir -p "$work/corpus"
  seeds=()
  [ -d "fuzz/corpus/${name%_fuzz}" ] && seeds=("fuzz/corpus/${name%_fuzz}")
  echo "== $name ($SECONDS_EACH s)"
  "$BUILD/$name" -max_total_time="$SECONDS_EACH" -artifact_prefix="$work/" "$work/corpus" "${seeds[@]}" 2>&1 | tail -2
done
