#!/usr/bin/env bash
# Data-parallel training on one machine (docs/scaling.md): 1 process with 2 threads against 2 MPI
# ranks with 1 thread each, and 1 process with the ranks' 2 shards; ToyMLP training at batch 1024
# and UNetSmall training at batch 64 (Fashion-MNIST); step rates from the programs' progress lines,
# ROUNDS interleaved rounds (default 3). Stop other work on the machine first.
#   TOY2D=build/test/examples/toy2d/ddpm-toy2d IMAGES=build/test/examples/images/ddpm-images \
#     benchmarks/mpi_ranks.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
toy2d=${TOY2D:-$root/build/test/examples/toy2d/ddpm-toy2d}
images=${IMAGES:-$root/build/test/examples/images/ddpm-images}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
toy=(train --steps "${TOY_STEPS:-400}" --batch 1024 --n 2 --decay constant --warmup 0
     --checkpoint-every 0)
img=(train --steps "${IMG_STEPS:-40}" --preview 0 --checkpoint-every 0)
rate() { grep -ao "finished [0-9/]* in [0-9.a-z]*  [0-9.k]* step/s" | tail -1 | awk '{print $(NF-1)}'; }
for round in $(seq "${ROUNDS:-3}"); do
  for program in toy img; do
    if [[ $program == toy ]]; then bin=$toy2d; args=("${toy[@]}"); else bin=$images; args=("${img[@]}"); fi
    echo "round $round $program 1x2 shards1 $("$bin" "${args[@]}" --threads 2 --out "$out/r" 2>&1 | rate)"
    echo "round $round $program 1x2 shards2 $("$bin" "${args[@]}" --threads 2 --shards 2 --out "$out/r" 2>&1 | rate)"
    echo "round $round $program 2x1 shards2 $(mpirun -np 2 --bind-to none "$bin" "${args[@]}" --threads 1 --shards 2 --out "$out/r" 2>&1 | rate)"
  done
done
