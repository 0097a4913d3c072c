#!/usr/bin/env bash
# Builds the API reference (no doxygen warnings allowed) and everything else (warnings are
# errors), runs the whole test suite through CTest, fuzzes every parser briefly and runs the file
# handling areas under sanitizers.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
ddpm_require_packages "${DDPM_BUILD_PACKAGES[@]}"
# Each stage's time, printed at the end: CI must stay well under 20 minutes on 2 cores.
stage_times=()
stage() { stage_times+=("$1 $((SECONDS - stage_start)) s"); stage_start=$SECONDS; }
trap 'echo "test.sh stage times: ${stage_times[*]}"' EXIT
stage_start=$SECONDS
# The API reference first: an undocumented public entity fails in seconds.
bash "$root/scripts/docs.sh" "$root/build/doxygen"
stage docs
build="$root/build/test"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDDPM_WERROR=ON -DDDPM_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
stage build
# One test process at a time: each already uses every core through OpenMP.
ctest --test-dir "$build" --output-on-failure --timeout 900
stage ctest
# Hostile input (issue 14): every parser fuzzed for 100,000 executions with a fixed seed (the same
# inputs on every machine) from its seed corpus and its past crashers (clang, ASan + UBSan), then the file-format and optimizer areas under GCC's ASan +
# UBSan (the whole suite under sanitizers would double CI's time: scripts/sanitize.sh runs it).
bash "$root/scripts/fuzz.sh" --runs 100000 --seed 1
stage fuzz
bash "$root/scripts/sanitize.sh" io data optim
stage sanitize
