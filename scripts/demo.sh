#!/usr/bin/env bash
# The main job: builds the examples in Release and trains a DDPM on the swissroll toy data with the
# default settings, writing model, loss curve, forward/reverse strips and samples to out/toy2d.
# Arguments replace the defaults, e.g. `scripts/demo.sh --dataset moons --steps 5000`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
ddpm_require_packages "${DDPM_BUILD_PACKAGES[@]}"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_TESTS=OFF >/dev/null
cmake --build "$root/build/release" --target ddpm-toy2d ddpm-exact-mixture -j"$(nproc)"
if (($# == 0)); then set -- --dataset swissroll; fi
"$root/build/release/examples/toy2d/ddpm-toy2d" train --out "$root/out/toy2d" "$@"
