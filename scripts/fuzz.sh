#!/usr/bin/env bash
# Builds ddpm's libFuzzer targets (tests/fuzz/<target>.cpp) with clang, ASan and UBSan into
# build/fuzz and runs each from a copy of its seed corpus (tests/fuzz/corpus/<target>, plus its
# regressions), so runs never write into the repository. Prints per target the executions, exec/s,
# coverage (cov/ft) and findings; exits 1 on any crash, leak, timeout or out-of-memory, keeping the
# artifact under build/fuzz/work/<target>/artifacts/.
#
#   scripts/fuzz.sh [--seconds N] [--runs N] [--seed S] [--jobs J] [--build-only] [TARGET...]
#
# --seconds: fuzzing time per target (default 30 when --runs is not given); --runs: a number of
# executions per target, which with --seed makes a run reproducible on any machine (CI uses it, so
# that what passes here passes there); both: whichever comes first (the long runs: --runs
# 10000000 --seconds 3600); --jobs: parallel fuzzing processes per target (libFuzzer's -fork,
# default 1); no TARGET: all of them. Minimize a crasher with
#   build/fuzz/<target> -minimize_crash=1 -runs=100000 build/fuzz/work/<target>/artifacts/crash-...
# and commit the result to tests/fuzz/regressions/<target>/ (the GCC suite replays it).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=""
runs=""
seed=""
jobs=1
build_only=0
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
fuzz_dir=$root/tests/fuzz
if ((${#targets[@]} == 0)); then
  for source in "$fuzz_dir"/*.cpp; do
    name=$(basename "$source" .cpp)
    [[ $name == replay_main || $name == make_corpus ]] || targets+=("$name")
  done
fi
for t in "${targets[@]}"; do
  [[ -f $fuzz_dir/$t.cpp ]] || { echo "fuzz.sh: no target $t (tests/fuzz/$t.cpp)" >&2; exit 2; }
done

cxx=${CXX:-}
if [[ -z $cxx ]]; then
  for candidate in clang++-14 clang++; do
    if command -v "$candidate" >/dev/null; then cxx=$candidate; break; fi
  done
fi
[[ -n $cxx ]] || { echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
eigen=$(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3)

build=$root/build/fuzz
mkdir -p "$build"
flags=(-std=c++20 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -O1 -g
       -I"$root/include" -I"$fuzz_dir" $eigen -DDDPM_HAVE_ZLIB)
# Rebuild a target when any header or its source is newer than its binary.
newest=$(find "$root/include" "$fuzz_dir" -maxdepth 3 \( -name '*.hpp' -o -name '*.cpp' \) \
           -printf '%T@\n' | sort -n | tail -1)
stale=()
for t in "${targets[@]}"; do
  binary=$build/$t
  if [[ ! -x $binary ]] || (($(stat -c %Y "$binary") < ${newest%.*})); then stale+=("$t"); fi
done
if ((${#stale[@]})); then
  start=$SECONDS
  echo "fuzz.sh: building ${stale[*]} with $cxx ($(nproc) at once)"
  export cxx build fuzz_dir
  export flags_text="${flags[*]}"
  printf '%s\n' "${stale[@]}" | xargs -P "$(nproc)" -I{} bash -c \
    '$cxx $flags_text "$fuzz_dir/{}.cpp" -o "$build/{}.tmp" -lz 2>"$build/{}.build.log" &&
     mv "$build/{}.tmp" "$build/{}" || { echo "fuzz.sh: building {} failed:"; cat "$build/{}.build.log"; exit 255; }'
  echo "fuzz.sh: built in $((SECONDS - start)) s"
fi
((build_only)) && exit 0

# One target per core at a time (each libFuzzer process is single-threaded); rows print in order.
fuzz_one() {
  local t=$1 work=$build/work/$1
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -r "$fuzz_dir/corpus/$t/." "$work/corpus/" 2>/dev/null || true
  if [[ -d $fuzz_dir/regressions/$t ]]; then cp -r "$fuzz_dir/regressions/$t/." "$work/corpus/"; fi
  local options=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1
                 -artifact_prefix="$work/artifacts/")
  [[ -n $runs ]] && options+=(-runs="$runs")
  [[ -n $seconds || -z $runs ]] && options+=(-max_total_time="${seconds:-30}")
  [[ -n $seed ]] && options+=(-seed="$seed")
  [[ -f $fuzz_dir/dict/$t.dict ]] && options+=(-dict="$fuzz_dir/dict/$t.dict")
  ((jobs > 1)) && options+=(-fork="$jobs")
  local rc=0
  (cd "$work" && "$build/$t" "${options[@]}" corpus >"$work/log" 2>&1) || rc=$?
  local execs rate last cov ft found verdict
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$work/log" | awk '{s+=$2} END {print s+0}')
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$work/log" | awk '{s+=$2} END {print s+0}')
  if ((jobs > 1)); then  # -fork prints "#N: cov: C ft: F corp: ... exec/s: E ..." lines
    last=$(grep -E '^#[0-9]+: cov:' "$work/log" | tail -1 || true)
    execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    rate=$(grep -oE 'exec/s: [0-9]+' <<<"$last" | awk '{print $2}')
  fi
  cov=$(grep -oE 'cov: [0-9]+' "$work/log" | tail -1 | awk '{print $2}')
  ft=$(grep -oE 'ft: [0-9]+' "$work/log" | tail -1 | awk '{print $2}')
  found=$(find "$work/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
            -o -name 'oom-*' \) | wc -l)
  verdict=$found
  ((rc != 0 || found != 0)) && verdict="$found (exit $rc; see $work/log, artifacts in $work/artifacts)"
  printf '%-12s %12s %9s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
    "$verdict" >"$work.row"
  ((rc == 0 && found == 0))
}

parallel=$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))
pids=()
for t in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
  fuzz_one "$t" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
printf '%-12s %12s %9s %8s %8s  %s\n' target executions exec/s cov ft findings
for t in "${targets[@]}"; do cat "$build/work/$t.row"; done
exit $status
