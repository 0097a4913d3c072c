#!/usr/bin/env bash
# Sourced by the other scripts: makes sure the Debian packages ddpm builds with are installed.
# As root it installs what is missing; otherwise it prints the exact apt-get line and stops.
ddpm_require_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$package")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -eq 0 ]]; then
    echo "ddpm: installing missing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { echo "ddpm: apt-get install failed" >&2; return 1; }
  else
    echo "ddpm: missing Debian packages. Install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

# What the library, examples and tests need (OpenMP comes with g++'s libgomp). python3-numpy and
# python3-torch let the .npy and cross-framework (safetensors, DDIM) tests run instead of skipping;
# libtorch-dev builds examples/libtorch_denoiser; pkg-config and doxygen serve the consumer test and
# the API reference; clang with its runtime libraries (libFuzzer, ASan, UBSan) builds the fuzz
# targets; Open MPI builds ddpm::dist and runs the mpirun tests.
DDPM_BUILD_PACKAGES=(g++ cmake make pkg-config libeigen3-dev doctest-dev libstb-dev libcli11-dev
  zlib1g-dev libbenchmark-dev clang-format python3-numpy python3-torch libtorch-dev doxygen
  dataset-fashion-mnist nlohmann-json3-dev clang libclang-rt-14-dev libopenmpi-dev openmpi-bin)
