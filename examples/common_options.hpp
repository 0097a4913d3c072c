// SPDX-License-Identifier: MIT
// Options every example subcommand shares (--seed, --threads, --out), the checks of numbers,
// integers and --threads, choice options whose names come from the library's enum tables, and
// the checks a command runs first: its input files readable, its output folder writable.
#pragma once

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/thread_tuner.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ddpm_examples {

/// The largest --threads accepted: 4 x the hardware threads, at most 1024 (more only adds
/// per-thread buffers and stacks; far more crashed the OpenMP runtime).
inline int max_threads() {
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<int>(std::min(1024u, 4 * hardware));
}

/// A CLI11 check of --threads: an integer in 1..max_threads(), with a message naming the option,
/// the value and the range.
inline CLI::Validator thread_count() {
  return CLI::Validator(
      [](const std::string& text) -> std::string {
        const std::string allowed =
            "1.." + std::to_string(max_threads()) + " (at most 4 x the " +
            std::to_string(std::max(1u, std::thread::hardware_concurrency())) +
            " hardware threads, and at most 1024)";
        std::size_t end = 0;
        long long value = 0;
        try {
          value = std::stoll(text, &end);
        } catch (const std::exception&) {
          end = 0;
        }
        if (end == 0 || end != text.size() || value < 1 || value > max_threads()) {
          return "invalid --threads = " + text + "; allowed: " + allowed;
        }
        return {};
      },
      "1.." + std::to_string(max_threads()), "thread count");
}

/// A CLI11 check that the value is a finite number accepted by `ok`; refusals read "invalid value
/// <text>; allowed: <allowed>" (CLI11 puts the option's name in front). CLI11's own PositiveNumber
/// prints its range as "0.000000 to <a 309-digit number>" and its Range lets NaN through.
template <class Ok>
CLI::Validator number_check(Ok ok, const std::string& allowed, const std::string& name) {
  return CLI::Validator(
      [ok, allowed](const std::string& text) -> std::string {
        std::size_t end = 0;
        double value = 0.0;
        try {
          value = std::stod(text, &end);
        } catch (const std::exception&) {
          end = 0;
        }
        if (end == 0 || end != text.size() || !std::isfinite(value) || !ok(value)) {
          return "invalid value " + text + "; allowed: " + allowed;
        }
        return {};
      },
      name, name);
}

/// A finite number > 0.
inline CLI::Validator positive() {
  return number_check([](double v) { return v > 0.0; }, "a finite number > 0", "POSITIVE");
}

/// A finite number >= 0.
inline CLI::Validator non_negative() {
  return number_check([](double v) { return v >= 0.0; }, "a finite number >= 0", "NONNEGATIVE");
}

/// A finite number.
inline CLI::Validator finite() {
  return number_check([](double) { return true; }, "a finite number", "FINITE");
}

/// A finite number in [low, high].
inline CLI::Validator range(double low, double high) {
  std::ostringstream bounds;
  bounds << "[" << low << ", " << high << "]";
  return number_check([low, high](double v) { return v >= low && v <= high; },
                      "a number in " + bounds.str(), bounds.str());
}

/// A CLI11 check that the value is an integer of type T in low..high, written in decimal digits
/// (a leading '-' only where T is signed); refusals read "invalid value <text>; allowed:
/// <allowed>" (CLI11 puts the option's name in front).
template <std::integral T>
CLI::Validator integer_check(T low, T high, const std::string& allowed, const std::string& name) {
  return CLI::Validator(
      [low, high, allowed](const std::string& text) -> std::string {
        T value{};
        const char* const last = text.data() + text.size();
        const auto [end, error] = std::from_chars(text.data(), last, value);
        if (text.empty() || error != std::errc{} || end != last || value < low || value > high) {
          return "invalid value " + text + "; allowed: " + allowed;
        }
        return {};
      },
      name, name);
}

/// An integer in low..high: "invalid value 1.5; allowed: an integer in 1..100000". Replaces
/// CLI11's Range, which says "Value 1.5 not in range 1 to 100000" of a fraction, and the number
/// checks above for integer options, which let 1.5 through to a conversion error.
inline CLI::Validator integer_range(long long low, long long high) {
  const std::string bounds = std::to_string(low) + ".." + std::to_string(high);
  return integer_check<long long>(low, high, "an integer in " + bounds, bounds);
}

/// An integer >= low that fits an int (counts whose only bound is the type): "invalid value 1.5;
/// allowed: an integer >= 1 (at most 2^31-1)".
inline CLI::Validator integer_at_least(int low) {
  const std::string from = std::to_string(low);
  return integer_check<long long>(low, std::numeric_limits<int>::max(),
                                  "an integer >= " + from + " (at most 2^31-1)", from + "..2^31-1");
}

/// A --seed: an integer 0..2^64-1. Without it CLI11 reads -1 as 2^64-1.
inline CLI::Validator seed_value() {
  return integer_check<std::uint64_t>(0, std::numeric_limits<std::uint64_t>::max(),
                                      "an integer 0..2^64-1", "0..2^64-1");
}

/// Refuses an input file (`option`'s value `path`) that is missing, a folder or unreadable, at
/// the start of a command, before it reads data or trains: throws ddpm::InvalidArgument
/// "invalid <option> = '<path>'; allowed: <what> (<reason>)", e.g. `what` = "an existing
/// checkpoint file". A corrupt file is left to its reader's FormatError (it names the file).
inline void check_input_file(const std::string& option, const std::filesystem::path& path,
                             const std::string& what) {
  const auto refuse = [&](const std::string& reason) {
    ddpm::detail::require(false, option, "'" + path.string() + "'", what + " (" + reason + ")");
  };
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) refuse("it is a folder");
  // Opening it is the test that counts: it covers a missing file, a missing permission and a
  // dangling link alike, with the system's reason.
  if (std::FILE* file = std::fopen(path.string().c_str(), "rb"); file != nullptr) {
    std::fclose(file);
  } else {
    refuse(std::generic_category().message(errno));
  }
}

/// What a checkpoint option takes, for check_input_file.
inline constexpr char kCheckpointFile[] = "an existing checkpoint file";

/// An input file of a command for check_input_files: its option, its path (empty: not given, not
/// checked) and what the option takes, e.g. "an existing checkpoint file".
struct InputFile {
  std::string option;
  std::string path;
  std::string what;
};

/// check_input_file of each given file, in order.
inline void check_input_files(std::initializer_list<InputFile> files) {
  for (const InputFile& f : files) {
    if (!f.path.empty()) check_input_file(f.option, f.path, f.what);
  }
}

namespace internal {

/// Calls refuse(reason) (which throws) unless `out` is a folder that exists or can be created,
/// a file can be written in it and, when bytes_needed > 0, its file system has that much space.
template <class Refuse>
void check_writable_folder(const std::filesystem::path& out, std::uintmax_t bytes_needed,
                           Refuse&& refuse) {
  std::error_code ec;
  if (std::filesystem::exists(out, ec) && !std::filesystem::is_directory(out, ec)) {
    refuse("'" + out.string() + "' exists and is not a folder");
  }
  std::filesystem::create_directories(out, ec);
  if (ec) refuse("cannot create '" + out.string() + "': " + ec.message());
  // A real write, since root passes permission bits. Not synced (it only has to be possible);
  // its name ends in .tmp like every file being written, so a kill here leaves nothing else.
  const std::filesystem::path probe = out / ".ddpm-write-probe.tmp";
  int error = 0;
  if (std::FILE* file = std::fopen(probe.string().c_str(), "wb"); file == nullptr) {
    error = errno;
  } else {
    if (std::fputs("ddpm", file) < 0) error = errno;
    if (std::fclose(file) != 0 && error == 0) error = errno;
  }
  if (error != 0) {
    std::filesystem::remove(probe, ec);
    refuse("cannot write '" + probe.string() +
           "' in it: " + std::generic_category().message(error));
  }
  std::filesystem::remove(probe, ec);
  if (bytes_needed == 0) return;
  const std::filesystem::space_info space = std::filesystem::space(out, ec);
  if (ec) return;  // unknown (some file systems): the atomic writes still fail cleanly
  if (space.available < bytes_needed) {
    refuse("its file system has " + std::to_string(space.available) +
           " bytes available; the first checkpoint needs about " + std::to_string(bytes_needed));
  }
}

}  // namespace internal

/// Refuses an output folder a command could not write, before it loads data, trains or samples
/// (not after an hour): creates `out` with its parents, writes and removes a probe file in it,
/// and, when `bytes_needed` > 0 (checkpoint_bytes_estimate, once the model's size is known),
/// checks that its file system has that much space available. Throws ddpm::InvalidArgument
/// naming `option`, the path and the reason.
inline void check_output_folder(const std::filesystem::path& out, std::uintmax_t bytes_needed = 0,
                                const std::string& option = "--out") {
  internal::check_writable_folder(out, bytes_needed, [&](const std::string& reason) {
    ddpm::detail::require(false, option, "'" + out.string() + "'",
                          "a folder that can be created and written (" + reason + ")");
  });
}

/// check_output_folder for a command whose `option` names the file it writes (export --out):
/// the file's folder must be writable and the file not a folder; the message names the file.
inline void check_output_file(const std::filesystem::path& file,
                              const std::string& option = "--out") {
  const auto refuse = [&](const std::string& reason) {
    ddpm::detail::require(false, option, "'" + file.string() + "'",
                          "a file in a folder that can be created and written (" + reason + ")");
  };
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) refuse("it is a folder");
  internal::check_writable_folder(file.has_parent_path() ? file.parent_path() : ".", 0, refuse);
}

struct CommonOptions {
  std::uint64_t seed = 0;
  int threads = 0;  ///< 0: not given (OpenMP's default)
  std::string out;  ///< output folder; each program sets its default
};

/// Whether --threads was given. Training then uses exactly that many threads; without it, the
/// Trainer's ThreadTuner picks 1 to OpenMP's default (all cores, or OMP_NUM_THREADS) from the
/// measured step times, which keeps a run fast when another process takes a core.
inline bool& threads_given() {
  static bool given = false;
  return given;
}

/// OpenMP's and Eigen's thread count; 0 leaves the defaults.
inline void set_threads(int threads) {
  if (threads <= 0) return;
  threads_given() = true;
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
}

/// Lets a ThreadTuner pick the thread count of each step of a sampling loop, timing the steps
/// between the sampler's step callbacks (step_done() in each); samples do not depend on the
/// count. Does nothing when --threads was given. Construct it just before sampling starts.
class SamplingThreads {
 public:
  SamplingThreads() {
    if (threads_given()) return;
    tuner_.emplace(ddpm::detail::max_threads());
    tuner_->begin_step();
    last_ = std::chrono::steady_clock::now();
  }

  void step_done() {
    if (!tuner_) return;
    const auto now = std::chrono::steady_clock::now();
    tuner_->end_step(std::chrono::duration<double>(now - last_).count());
    tuner_->begin_step();
    last_ = now;
  }

 private:
  std::optional<ddpm::ThreadTuner> tuner_;
  std::chrono::steady_clock::time_point last_;
};

/// --seed, --threads and --out of the subcommand `app`; its --threads takes effect (set_threads)
/// once the command line is parsed with `app` chosen.
inline void add_common_options(CLI::App& app, CommonOptions& common) {
  app.add_option("--seed", common.seed, "random seed")->check(seed_value())->capture_default_str();
  app.add_option("--threads", common.threads,
                 "threads (default: OpenMP's default; training then picks 1 to that many from "
                 "the measured step times)")
      ->check(thread_count());
  app.add_option("--out", common.out, "output folder")->capture_default_str();
  app.callback([&common] { set_threads(common.threads); });
}

/// An option that sets an enum by name; the choices come from the enum's table.
template <ddpm::NamedEnum E>
CLI::Option* add_choice(CLI::App& app, const std::string& name, E& value, const std::string& help) {
  return app
      .add_option_function<std::string>(
          name, [&value](const std::string& text) { value = ddpm::parse_enum<E>(text); },
          help + ": " + ddpm::enum_choices<E>())
      ->check(CLI::IsMember(ddpm::enum_names<E>()))
      ->default_str(std::string(ddpm::to_string(value)));
}

}  // namespace ddpm_examples
