#!/usr/bin/env bash
# The main job: builds the examples in Release and runs the demo, writing its pictures to out/.
# Extra arguments go to the demo program (try --help).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
ddpm_require_packages "${DDPM_BUILD_PACKAGES[@]}"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_TESTS=OFF >/dev/null
cmake --build "$root/build/release" --target ddpm-exact-mixture -j"$(nproc)"
"$root/build/release/examples/exact_mixture/ddpm-exact-mixture" --out "$root/out/exact_mixture" "$@"
