#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Training speed on a shared machine: each workload quiet and with one core kept busy by another
# process (a spinning loop), for OpenMP's wait policies (libgomp's default, active, passive, a
# short spin) and thread counts. Prints a Markdown table of medians and of the slowdown under load
# against the quiet 2-thread run with the default policy (issue 14: at most about 2.5x).
#
#   benchmarks/load.sh [--repeats R] [--only KEY,...] [--build-dir DIR] [--bench PATH] [--small]
#
# --bench: time this ddpm-bench binary instead of building one.
# Rounds interleave the configurations, so a drift in the machine's speed hits all of them alike.
# Run it on otherwise idle cores: any other load is counted as the hog's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
repeats=3
only="unet_train_b64_ms,toy_train_b256_ms"
build_dir="$repo/build/bench-release"
small=()
bench=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repeats) repeats="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --small) small=(--small); shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "load.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z $bench ]]; then
  cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_BENCHMARKS=ON \
    -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$build_dir" --target ddpm-bench -j 2 >/dev/null
  bench="$build_dir/benchmarks/ddpm-bench"
fi

# name | threads | environment (OMP_WAIT_POLICY and GOMP_SPINCOUNT are unset unless given here)
configs=("2 threads, libgomp defaults|2|" "2 threads, OMP_WAIT_POLICY=active|2|OMP_WAIT_POLICY=active"
         "2 threads, OMP_WAIT_POLICY=passive|2|OMP_WAIT_POLICY=passive"
         "2 threads, GOMP_SPINCOUNT=10000|2|GOMP_SPINCOUNT=10000" "1 thread|1|")
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
      for i in "${!configs[@]}"; do
        IFS='|' read -r name threads setting <<<"${configs[$i]}"
        echo "[$key] round $r/$repeats, $load, $name" >&2
        run_env=(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)
        [[ -n $setting ]] && run_env+=("$setting")
        "${run_env[@]}" "$bench" --threads "$threads" --only "$key" --repeats 1 "${small[@]}" |
          sed "s/^/$load $i /" >>"$out_dir/runs.txt"
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
        quiet = statistics.median(runs[(key, "quiet", i)])
        loaded = statistics.median(runs[(key, "loaded", i)])
        print(f"| {key} | {name} | {quiet:.4g} {unit} | {loaded:.4g} {unit} | {loaded / base:.2f}x |")
EOF
