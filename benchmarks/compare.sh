#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Side-by-side ToyMLP and UNetSmall benchmark of ddpm and PyTorch (tuned as in BENCHMARKS.md, and
# out of the box), run interleaved on the same thread count; prints a Markdown table of medians,
# ratios and GFLOP/s, and with --results FILE writes it with the machine description.
#
#   benchmarks/compare.sh [--threads N] [--repeats R] [--only KEY,...] [--full-default]
#                         [--results benchmarks/RESULTS.md] [--build-dir DIR] [--small]
#                         [--sweep 1,2,4,8,16]
#
# Each round runs every implementation once per workload (ddpm, PyTorch tuned, PyTorch default,
# in turn); a train run (and a UNet forward run) times 20 steps one by one. The figure is the
# median over R rounds of each run's median. PyTorch out of the box (reference BLAS) takes ~12
# minutes per ancestral run, so its ancestral workload runs only with --full-default. --small
# passes --small to both programs: tiny sizes that check the script end to end in seconds (the
# figures mean nothing). --sweep LIST runs benchmarks/sweep.sh instead: ddpm and PyTorch tuned at
# each thread count of LIST, and prints the thread-scaling table (issue 15).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
threads=2
repeats=5
only="toy_train_b256_ms,toy_train_b4096_ms,toy_ddpm1000_n10000_s,toy_ddim50_n10000_s"
only+=",unet_train_b64_ms,unet_forward_b64_ms,point_train_s16_n2048_ms"
full_default=0
small=()
sweep=""
results=""
build_dir="$repo/build/bench-release"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --full-default) full_default=1; shift ;;
    --results) results="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --small) small=(--small); shift ;;
    --sweep) sweep="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# ---- what must be installed (Debian packages) ------------------------------------------------
packages=(cmake g++ libeigen3-dev libcli11-dev libbenchmark-dev doctest-dev python3-torch
          libopenblas0-openmp libblas3 liblapack3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update && apt-get install -y "${missing[@]}"
  else
    echo "compare.sh: missing packages; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# ---- build ddpm-bench in Release ------------------------------------------------------------------
cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_BENCHMARKS=ON \
  -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build_dir" --target ddpm-bench -j "$threads" >/dev/null
bench="$build_dir/benchmarks/ddpm-bench"

# ---- the three configurations ------------------------------------------------------------------
# Debian picks libblas.so.3 through the alternative libblas.so.3-x86_64-linux-gnu
# (`update-alternatives --display libblas.so.3-x86_64-linux-gnu`); LD_LIBRARY_PATH pins each run
# to one BLAS whatever that alternative points to.
multiarch=/usr/lib/x86_64-linux-gnu
tuned_env=(env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=SkylakeX
           LD_LIBRARY_PATH="$multiarch/openblas-openmp"
           MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
           MALLOC_TOP_PAD_=268435456)
default_env=(env LD_LIBRARY_PATH="$multiarch/blas:$multiarch/lapack")
torch_script="$here/torch_reference.py"

if [[ -n $sweep ]]; then
  exec "${tuned_env[@]}" "$here/sweep.sh" --bench "$bench" --threads-list "$sweep" \
    --repeats "$repeats" --only "$only" --python /usr/bin/python3 \
    --out "$build_dir/sweep-runs" "${small[@]}"
fi

# Raw JSON lines of every run are kept for inspection next to the build.
out_dir="$build_dir/compare-runs"
rm -rf "$out_dir" && mkdir -p "$out_dir"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
IFS=',' read -r -a keys <<<"$only"
for key in "${keys[@]}"; do
  for ((r = 1; r <= repeats; ++r)); do
    echo "[$key] round $r/$repeats" >&2
    "$bench" --threads "$threads" --only "$key" --repeats 1 "${small[@]}" >>"$out_dir/ddpm.jsonl"
    "${tuned_env[@]}" /usr/bin/python3 "$torch_script" --threads "$threads" --only "$key" \
      --repeats 1 "${small[@]}" >>"$out_dir/tuned.jsonl"
    if [[ $key != toy_ddpm1000_n10000_s || $full_default -eq 1 ]] && [[ $r -eq 1 ]]; then
      # Out of the box is 30x slower: one round is enough to place it.
      "${default_env[@]}" /usr/bin/python3 "$torch_script" --threads "$threads" --only "$key" \
        --repeats 1 "${small[@]}" >>"$out_dir/default.jsonl"
    fi
  done
done
touch "$out_dir/default.jsonl"

table="$(/usr/bin/python3 - "$out_dir" "$threads" "$repeats" "${#small[@]}" <<'EOF'
import json, statistics, sys
out_dir, threads, repeats, small = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] != "0"
def load(name):
    runs = {}
    for line in open(f"{out_dir}/{name}.jsonl"):
        for k, v in json.loads(line).items():
            runs.setdefault(k, []).append(v)
    return runs
ddpm, tuned, default = load("ddpm"), load("tuned"), load("default")
names = {"toy_train_b256_ms": "ToyMLP train, batch 256", "toy_train_b4096_ms": "ToyMLP train, batch 4096",
         "toy_ddpm1000_n10000_s": "ToyMLP ancestral 1000 steps, 10k points",
         "toy_ddim50_n10000_s": "ToyMLP DDIM 50 steps, 10k points",
         "unet_train_b64_ms": "UNetSmall train, batch 64",
         "unet_forward_b64_ms": "UNetSmall forward, batch 64",
         "point_train_s16_n2048_ms": "Point-cloud train, 16 shapes x 2048 points"}
goals = {"toy_train_b256_ms": 1.5, "toy_train_b4096_ms": 1.3, "toy_ddpm1000_n10000_s": 1.3,
         "toy_ddim50_n10000_s": 1.3, "unet_train_b64_ms": 1.0, "unet_forward_b64_ms": 1.0,
         "point_train_s16_n2048_ms": 1.3}
def fmt(v, unit):
    return f"{v:.3g} {unit}" if v is not None else "not run"
if small:
    print("SMOKE RUN (--small): tiny sizes under the usual names; these figures mean nothing.")
    print()
print(f"Threads: {threads}; medians over {repeats} interleaved rounds (PyTorch out of the box: 1 round).")
print()
print("| workload | PyTorch tuned | PyTorch default | ddpm | ratio (tuned / ddpm) | goal | GFLOP/s tuned / default / ddpm |")
print("|---|---|---|---|---|---|---|")
for key, name in names.items():
    if key not in ddpm:
        continue
    unit = key.rsplit("_", 1)[1]
    g = key.rsplit("_", 1)[0] + "_gflops"
    med = lambda runs, k: statistics.median(runs[k]) if k in runs else None
    d, t, o = med(ddpm, key), med(tuned, key), med(default, key)
    gd, gt, go = med(ddpm, g), med(tuned, g), med(default, g)
    ratio = t / d
    mark = "met" if ratio >= goals[key] else "missed"
    gf = " / ".join(f"{x:.0f}" if x is not None else "-" for x in (gt, go, gd))
    print(f"| {name} | {fmt(t, unit)} | {fmt(o, unit)} | {fmt(d, unit)} | {ratio:.2f}x | "
          f"≥ {goals[key]}x ({mark}) | {gf} |")
EOF
)"
echo "$table"

if [[ -n "$results" ]]; then
  cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
  torch_version="$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
  openblas="$(dpkg-query -W -f='${Version}' libopenblas0-openmp)"
  {
    echo "# ddpm vs PyTorch on the ToyMLP and UNetSmall reference workloads"
    echo
    echo "Produced by \`benchmarks/compare.sh --threads $threads --repeats $repeats\` on $(date -u +%Y-%m-%d)."
    echo "Workloads, FLOP model and goals: BENCHMARKS.md (2 FLOP per multiply-add; forward"
    echo "148,480 multiply-adds per ToyMLP sample and 138,318,976 per UNetSmall image; a train"
    echo "step = 3x forward, a sampling step = 1 forward per point). Ratio = PyTorch tuned time /"
    echo "ddpm time (higher is better for ddpm)."
    echo
    echo "Machine: $cpu, $(nproc) cores visible, $(uname -r); shared with other jobs, so absolute"
    echo "times drift between runs — read the ratios, which come from interleaved runs."
    echo "ddpm: g++ $(g++ -dumpversion), -O3 -march=native, Eigen $(dpkg-query -W -f='${Version}' libeigen3-dev), OpenMP."
    echo "PyTorch tuned: python3-torch $torch_version, OpenBLAS $openblas (libopenblas0-openmp,"
    echo "OPENBLAS_CORETYPE=SkylakeX, OPENBLAS_L2_SIZE unset), tuned glibc malloc, set_num_threads($threads)."
    echo "PyTorch default: same, on Debian's reference BLAS (libblas3) and the environment as is."
    echo "Load average (1, 5, 15 min) before the runs: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "(above ~0.1 means other jobs shared the cores and the figures are noisier)."
    echo
    echo "$table"
  } >"$results"
  echo "wrote $results" >&2
fi
