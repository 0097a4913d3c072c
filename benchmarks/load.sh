#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Training speed on a shared machine: each workload quiet and with one core kept busy by another
# process (a spinning loop). The kernel workloads (ddpm-bench keys) run under OpenMP's wait
# policies (libgomp's default, active, passive, a short spin) and thread counts; the program
# workload `toy2d_train` is a whole `ddpm-toy2d train` run (default batch, --steps of them) with
# --threads 2, --threads 1 and no --threads (the default: the Trainer's ThreadTuner picks the
# count from measured step times). Prints a Markdown table of medians and of the slowdown under
# load against the quiet 2-thread run with libgomp's default policy (issue 14: at most about 2.5x).
#
#   benchmarks/load.sh [--repeats R] [--only KEY,...] [--build-dir DIR] [--bench PATH]
#                      [--toy2d PATH] [--steps N] [--small]
#
# --only: default unet_train_b64_ms,toy_train_b256_ms,toy2d_train; --bench, --toy2d: time these
# binaries instead of building them; --steps: training steps of toy2d_train (default 1000).
# Rounds interleave the configurations, so a drift in the machine's speed hits all of them alike.
# Run it on otherwise idle cores: any other load is counted as the hog's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
repeats=3
only="unet_train_b64_ms,toy_train_b256_ms,toy2d_train"
toy2d=""
steps=1000
build_dir="$repo/build/bench-release"
small=()
bench=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repeats) repeats="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --toy2d) toy2d="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --small) small=(--small); steps=200; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "load.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z $bench || -z $toy2d ]]; then
  cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_BENCHMARKS=ON \
    -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_EXAMPLES=ON >/dev/null
  [[ -n $bench ]] || cmake --build "$build_dir" --target ddpm-bench -j 2 >/dev/null
  [[ -n $toy2d ]] || cmake --build "$build_dir" --target ddpm-toy2d -j 2 >/dev/null
  bench=${bench:-$build_dir/benchmarks/ddpm-bench}
  toy2d=${toy2d:-$build_dir/examples/toy2d/ddpm-toy2d}
fi

# name | threads (0: no --threads) | environment (OMP_WAIT_POLICY and GOMP_SPINCOUNT are unset
# unless given here). Kernel workloads use all five, toy2d_train the first, the last and "tuned".
configs=("2 threads, libgomp defaults|2|" "2 threads, OMP_WAIT_POLICY=active|2|OMP_WAIT_POLICY=active"
         "2 threads, OMP_WAIT_POLICY=passive|2|OMP_WAIT_POLICY=passive"
         "2 threads, GOMP_SPINCOUNT=10000|2|GOMP_SPINCOUNT=10000" "1 thread|1|"
         "default: ThreadTuner picks 1-2 threads|0|")
kernel_configs=(0 1 2 3 4)
program_configs=(0 4 5)
hog_pid=""
stop_hog() {
  if [[ -n $hog_pid ]]; then kill "$hog_pid" 2>/dev/null; wait "$hog_pid" 2>/dev/null || true; fi
  hog_pid=""
}
trap stop_hog EXIT

out_dir="$build_dir/load-runs"
rm -rf "$out_dir" && mkdir -p "$out_dir"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
IFS=',' read -r -a keys <<<"$only"
for key in "${keys[@]}"; do
  for ((r = 1; r <= repeats; ++r)); do
    for load in quiet loaded; do
      if [[ $load == loaded ]]; then
        bash -c 'while :; do :; done' &
        hog_pid=$!
        sleep 1
      fi
      indices=("${kernel_configs[@]}")
      [[ $key == toy2d_train ]] && indices=("${program_configs[@]}")
      for i in "${indices[@]}"; do
        IFS='|' read -r name threads setting <<<"${configs[$i]}"
        echo "[$key] round $r/$repeats, $load, $name" >&2
        run_env=(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)
        [[ -n $setting ]] && run_env+=("$setting")
        thread_option=()
        ((threads > 0)) && thread_option=(--threads "$threads")
        if [[ $key == toy2d_train ]]; then
          # The training rate from the progress line "train: finished N/N in T  R step/s".
          "${run_env[@]}" "$toy2d" train --steps "$steps" "${thread_option[@]}" --checkpoint-every 0 --sampler ddim --sample-steps 10 \
            --out "$out_dir/toy2d" 2>&1 >/dev/null | grep -oE 'finished [0-9]+/[0-9]+ in .* step/s' |
            awk -v key="$key" '{ rate = $(NF - 1); scale = 1
                 if (rate ~ /k$/) { scale = 1000; sub(/k$/, "", rate) }
                 printf "{\"%s_ms\": %.6g}\n", key, 1000 / (rate * scale) }' |
            sed "s/^/$load $i /" >>"$out_dir/runs.txt"
        else
          "${run_env[@]}" "$bench" "${thread_option[@]}" --only "$key" --repeats 1 "${small[@]}" |
            sed "s/^/$load $i /" >>"$out_dir/runs.txt"
        fi
      done
      stop_hog
    done
  done
done

/usr/bin/python3 - "$out_dir/runs.txt" "$repeats" "$load_before" "${#small[@]}" "${configs[@]}" <<'EOF'
import json, statistics, sys
path, repeats, load_before, small = sys.argv[1:5]
names = [c.split("|")[0] for c in sys.argv[5:]]
runs = {}
for line in open(path):
    load, index, payload = line.split(" ", 2)
    for key, value in json.loads(payload).items():
        if key.endswith("_ms") or key.endswith("_s"):
            runs.setdefault((key, load, int(index)), []).append(value)
if small != "0":
    print("SMOKE RUN (--small): tiny sizes; these figures mean nothing.\n")
print(f"Medians over {repeats} interleaved rounds; load average before: {load_before}.")
print("Slowdown: against the quiet 2-thread run with the default policy.\n")
print("| workload | configuration | quiet | one core busy | slowdown under load |")
print("|---|---|---|---|---|")
for key in sorted({k for k, _, _ in runs}):
    unit = key.rsplit("_", 1)[1]
    base = statistics.median(runs[(key, "quiet", 0)])
    for i, name in enumerate(names):
        if (key, "quiet", i) not in runs:
            continue
        quiet = statistics.median(runs[(key, "quiet", i)])
        loaded = statistics.median(runs[(key, "loaded", i)])
        print(f"| {key} | {name} | {quiet:.4g} {unit} | {loaded:.4g} {unit} | {loaded / base:.2f}x |")
EOF
