#!/usr/bin/env bash
# Builds the API reference (no doxygen warnings allowed) and everything else (warnings are
# errors), and runs the whole test suite through CTest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
ddpm_require_packages "${DDPM_BUILD_PACKAGES[@]}"
# The API reference first: an undocumented public entity fails in seconds.
bash "$root/scripts/docs.sh" "$root/build/doxygen"
build="$root/build/test"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDDPM_WERROR=ON -DDDPM_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
# One test process at a time: each already uses every core through OpenMP.
ctest --test-dir "$build" --output-on-failure --timeout 900
