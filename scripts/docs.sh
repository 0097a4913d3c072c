#!/usr/bin/env bash
# Builds the Doxygen API reference of include/ddpm into BUILD_DIR/docs/html (default
# build/doxygen) and fails when doxygen reports any warning, so CI catches an undocumented public
# entity. Usage: scripts/docs.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/scripts/setup.sh"
ddpm_require_packages doxygen
build_dir=${1:-build/doxygen}
mkdir -p "$build_dir/docs"
log="$build_dir/docs/doxygen-warnings.log"
# The Doxyfile's settings, with the output directory of this build appended (later lines win).
status=0
{ cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = $build_dir/docs"; } | doxygen - 2>"$log" || status=$?
# WARN_AS_ERROR = FAIL_ON_WARNINGS already fails the run; the log check also catches a warning
# doxygen does not count (and shows them all).
if [[ -s "$log" || $status -ne 0 ]]; then
  cat "$log" >&2
  echo "docs.sh: doxygen reported $(grep -c . "$log" || true) warning(s) (exit status $status)" >&2
  exit 1
fi
echo "docs.sh: $build_dir/docs/html/index.html (no warnings)"
