#!/usr/bin/env bash
# The test suite under sanitizers (issue 14).
#
#   scripts/sanitize.sh [--tsan] [AREA ...]
#
# Default: AddressSanitizer + UndefinedBehaviorSanitizer (GCC, -O1 -g1, every finding fatal) over the
# test areas given (default: all areas of tests/<area>/; "fuzz": the fuzz targets replaying their
# corpora and regressions). --tsan: ThreadSanitizer over the OpenMP
# paths, built with clang and LLVM's OpenMP runtime, whose barriers and tasks TSan understands through
# the Archer tool (GCC's libgomp is not instrumented, so under it every OpenMP region would report
# false races).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"

tsan=0
areas=()
for arg in "$@"; do
  case "$arg" in
    --tsan) tsan=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) areas+=("$arg") ;;
  esac
done
if ((${#areas[@]} == 0)); then
  for dir in "$root"/tests/*/; do
    compgen -G "$dir*_test.cpp" >/dev/null && areas+=("$(basename "$dir")")
  done
fi

if ((tsan)); then
  ddpm_require_packages "${DDPM_BUILD_PACKAGES[@]}" clang libomp-dev
  build="$root/build/tsan"
  llvm_lib=$(dirname "$(readlink -f "$(command -v clang++)")")/../lib
  # -Werror stays with the GCC builds: clang warns about the tests' doctest idioms (a [[nodiscard]]
  # result inside CHECK_THROWS), which is not what this build is for.
  compiler=(-DCMAKE_CXX_COMPILER=clang++ -DDDPM_SANITIZE=thread -DDDPM_WERROR=OFF)
  # Archer hooks OpenMP's synchronization into TSan; the uninstrumented runtime itself is ignored.
  export OMP_TOOL_LIBRARIES="$llvm_lib/libarcher.so"
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1"
  [[ -f $OMP_TOOL_LIBRARIES ]] || { echo "sanitize.sh: no Archer at $OMP_TOOL_LIBRARIES" >&2; exit 1; }
  # The toolchain must see a race between OpenMP threads, or a clean suite would prove nothing.
  probe=$(mktemp -d)
  printf '%s\n' '#include <cstdio>' 'int main(int argc, char**) {' '  long sum = 0;' \
    '#pragma omp parallel for num_threads(2)' '  for (int i = 0; i < 100000; ++i) sum += i * argc;' \
    '  std::printf("%ld\\n", sum);' '}' >"$probe/race.cpp"
  clang++ -fsanitize=thread -fopenmp -O1 -g "$probe/race.cpp" -o "$probe/race"
  if "$probe/race" >"$probe/log" 2>&1 || ! grep -q "ThreadSanitizer: data race" "$probe/log"; then
    echo "sanitize.sh: TSan with Archer did not report a planted OpenMP data race:" >&2
    cat "$probe/log" >&2
    exit 1
  fi
  rm -rf "$probe"
  echo "sanitize.sh: TSan + Archer report a planted OpenMP race; running the suite"
else
  ddpm_require_packages "${DDPM_BUILD_PACKAGES[@]}"
  build="$root/build/asan"
  compiler=(-DDDPM_SANITIZE=address,undefined -DDDPM_WERROR=ON)
  export ASAN_OPTIONS="detect_leaks=1 abort_on_error=0 strict_string_checks=1 detect_stack_use_after_return=1"
  export UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1"
fi

# -g1: line tables are all a sanitizer's stack trace needs, and full debug info made the ASan
# build a third slower.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  "${compiler[@]}" >/dev/null
targets=()
pattern=""
for area in "${areas[@]}"; do
  if [[ $area == fuzz ]]; then  # the fuzz targets replaying their corpora and regressions
    for source in "$root"/tests/fuzz/*.cpp; do
      name=$(basename "$source" .cpp)
      [[ $name == replay_main || $name == make_corpus ]] || targets+=("ddpm_fuzz_replay_$name")
    done
    pattern+="${pattern:+|}^fuzz replay: "
  else
    targets+=("ddpm_tests_$area")
    pattern+="${pattern:+|}^$area:"
  fi
done
# Only the test executables: the examples and header checks add build time and no coverage. Each
# test area is one translation unit and one make builds its targets one after another, so the
# targets build side by side, after the objects they share.
shared=()
[[ " ${targets[*]}" == *" ddpm_tests_"* ]] && shared+=(ddpm_test_main)
[[ " ${targets[*]}" == *" ddpm_fuzz_replay_"* ]] && shared+=(ddpm_fuzz_replay_main)
for target in "${shared[@]}"; do cmake --build "$build" --target "$target"; done
printf '%s\n' "${targets[@]}" | xargs -P "$(nproc)" -I{} cmake --build "$build" --target {}
# -LE programs: the tests that run the example programs (label "programs"), which are not built.
ctest --test-dir "$build" --output-on-failure --timeout 900 -R "$pattern" -LE programs
