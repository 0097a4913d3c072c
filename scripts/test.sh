#!/usr/bin/env bash
# Builds everything (warnings are errors) and runs the whole test suite through CTest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
ddpm_require_packages "${DDPM_BUILD_PACKAGES[@]}"
build="$root/build/test"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDDPM_WERROR=ON -DDDPM_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
# One test process at a time: each already uses every core through OpenMP.
ctest --test-dir "$build" --output-on-failure --timeout 900
