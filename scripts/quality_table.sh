#!/usr/bin/env bash
# Trains ddpm-toy2d with its defaults on each BENCHMARKS.md data set and evaluates ancestral and
# DDIM-50 samples; prints the Markdown table kept in docs/quality.md. Takes ~15 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
ddpm_require_packages "${DDPM_BUILD_PACKAGES[@]}"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_TESTS=OFF >/dev/null
cmake --build "$root/build/release" --target ddpm-toy2d -j"$(nproc)" >/dev/null
toy2d="$root/build/release/examples/toy2d/ddpm-toy2d"
out="$root/out/quality"
field() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$1" | head -1; }
echo "| dataset | train time | sampler | MMD² | floor | energy | floor | sliced W1 | floor | NLL bound (nats/dim) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for dataset in 8gaussians moons swissroll checkerboard; do
  start=$(date +%s)
  "$toy2d" train --dataset "$dataset" --n 1000 --sampler ddim --out "$out/$dataset" >/dev/null 2>&1
  seconds=$(($(date +%s) - start))
  for sampler in ddpm ddim; do
    "$toy2d" eval --checkpoint "$out/$dataset/model.ckpt" --sampler "$sampler" --n 5000 \
      --out "$out/$dataset/eval-$sampler" >/dev/null 2>&1
    m="$out/$dataset/eval-$sampler/metrics.json"
    floor=$(tr -d '\n' <"$m" | sed -n 's/.*"floor": {\([^}]*\)}.*/\1/p')
    f() { echo "$floor" | sed -n "s/.*\"$1\": \([-0-9.e+]*\).*/\1/p"; }
    total=$(tr -d '\n' <"$m" | sed -n 's/.*"total": \([-0-9.e+]*\).*/\1/p')
    label=$([[ $sampler == ddpm ]] && echo "ancestral 1000" || echo "DDIM 50")
    echo "| $dataset | ${seconds} s | $label | $(field "$m" mmd2) | $(f mmd2) | $(field "$m" energy_distance) | $(f energy_distance) | $(field "$m" sliced_w1) | $(f sliced_w1) | $total |"
  done
done
