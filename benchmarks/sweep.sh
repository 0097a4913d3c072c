#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Thread scaling (issue 15): ddpm-bench and PyTorch (benchmarks/torch_reference.py) at each thread
# count of a list, interleaved (each round runs every count once, ddpm then PyTorch), raw JSON lines
# in OUT, then the scaling table of scaling_table.py. Needs only a ddpm-bench binary and a python3
# with torch, so it runs on a machine without ddpm's Debian packages (a static x86-64-v4 build).
#
#   benchmarks/sweep.sh --bench PATH [--threads-list 1,2,4,8,16] [--repeats R] [--only KEY,...]
#                       [--python PYTHON] [--out DIR] [--small]
#
# Extra environment for the PyTorch runs (a tuned BLAS, malloc settings) comes from the caller
# (compare.sh --sweep passes its tuned environment).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench=""
list="1,2,4,8,16"
repeats=3
only="toy_train_b256_ms,toy_train_b4096_ms,toy_ddpm1000_n10000_s,toy_ddim50_n10000_s"
only+=",unet_train_b64_ms,unet_forward_b64_ms"
python=python3
out="sweep-runs"
small=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bench) bench="$2"; shift 2 ;;
    --threads-list) list="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --small) small=(--small); shift ;;
    -h|--help) sed -n '3,13p' "$0"; exit 0 ;;
    *) echo "sweep.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x $bench ]] || { echo "sweep.sh: --bench must name the ddpm-bench binary (got '$bench')" >&2; exit 2; }
[[ $list =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
  { echo "sweep.sh: --threads-list must be positive integers separated by commas (got '$list')" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out"/ddpm_*.jsonl "$out"/torch_*.jsonl
IFS=',' read -r -a counts <<<"$list"
IFS=',' read -r -a keys <<<"$only"
for ((r = 1; r <= repeats; ++r)); do
  for key in "${keys[@]}"; do
    for t in "${counts[@]}"; do
      echo "[$key] round $r/$repeats, $t threads" >&2
      "$bench" --threads "$t" --only "$key" --repeats 1 "${small[@]}" >>"$out/ddpm_$t.jsonl"
      "$python" "$here/torch_reference.py" --threads "$t" --only "$key" --repeats 1 \
        "${small[@]}" >>"$out/torch_$t.jsonl"
    done
  done
done
"$python" "$here/scaling_table.py" "$out" ${small[@]+--small}
