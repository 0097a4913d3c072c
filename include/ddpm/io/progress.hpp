// SPDX-License-Identifier: MIT
// A progress reporter for long loops: a bar redrawn in place on a terminal, periodic lines in logs.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

#if defined(_WIN32)
#include <io.h>
#else
#include <unistd.h>
#endif

#include "ddpm/core/error.hpp"

namespace ddpm::io {

/// A duration as people read it: "0.4s", "42s", "1m05s", "2h03m", "3d04h"; "--" if unknown
/// (negative or not finite).
[[nodiscard]] inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  char buffer[48];
  if (seconds < 9.95) {
    std::snprintf(buffer, sizeof(buffer), "%.1fs", seconds);
    return buffer;
  }
  const auto total = static_cast<long long>(std::llround(std::min(seconds, 1e15)));
  if (total < 60) {
    std::snprintf(buffer, sizeof(buffer), "%llds", total);
  } else if (total < 3600) {
    std::snprintf(buffer, sizeof(buffer), "%lldm%02llds", total / 60, total % 60);
  } else if (total < 86400) {
    std::snprintf(buffer, sizeof(buffer), "%lldh%02lldm", total / 3600, total % 3600 / 60);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%lldd%02lldh", total / 86400, total % 86400 / 3600);
  }
  return buffer;
}

/// A rate with three significant digits and a unit prefix: "12.3 it/s", "4.56k it/s", "1.2M it/s";
/// below one per second as time per item, "2.5s/it" or "1m05s/it"; "-- it/s" if unknown.
[[nodiscard]] inline std::string format_rate(double per_second, std::string_view unit = "it") {
  const std::string per = std::string(unit) + "/s";
  if (!std::isfinite(per_second) || per_second <= 0) return "-- " + per;
  if (per_second < 1) return format_duration(1 / per_second) + "/" + std::string(unit);
  char buffer[64];
  const char* prefix = "";
  double value = per_second;
  if (value >= 999.5e6) {
    value /= 1e9;
    prefix = "G";
  } else if (value >= 999.5e3) {
    value /= 1e6;
    prefix = "M";
  } else if (value >= 999.5) {
    value /= 1e3;
    prefix = "k";
  }
  const int decimals = value < 9.995 ? 2 : value < 99.95 ? 1 : 0;
  std::snprintf(buffer, sizeof(buffer), "%.*f%s ", decimals, value, prefix);
  return buffer + per;
}

/// Where a ProgressBar draws.
enum class ProgressMode {
  automatic,  ///< in-place bar if the stream is `std::cerr`, `clog` or `cout` on a terminal
  terminal,   ///< a bar redrawn in place with a carriage return
  lines,      ///< whole lines now and then, for log files and CI
};

/// Tuning for ProgressBar; the defaults suit interactive training runs.
struct ProgressOptions {
  ProgressMode mode = ProgressMode::automatic;  ///< where and how it draws
  std::string unit = "it";                      ///< what is counted, e.g. "step" or "img"
  int bar_width = 24;                           ///< characters of the bar in terminal mode
  double redraw_seconds = 0.1;  ///< terminal mode: at most one redraw per this interval
  double line_fraction = 0.1;   ///< lines mode: a line each time this fraction more is done
  double line_seconds = 30;     ///< lines mode: and at least this often while work goes on
  /// The work also ends this many seconds after the start (0: no limit), as training with a
  /// wall-clock budget does: the bar, the percentage and the ETA follow whichever end is nearer.
  double time_limit_seconds = 0;
  std::function<double()> clock{};  ///< seconds since any fixed time; empty: steady_clock
};

/// Reports the progress of `total` items of work: a bar, done/total, rate, elapsed time and ETA,
/// and optional caller text (e.g. the current loss). Not thread-safe: call from one thread, outside
/// parallel regions. update() is cheap enough to call every iteration; it draws only now and then.
///
///   ddpm::io::ProgressBar bar(steps, "train");
///   for (int step = 1; step <= steps; ++step) { ...; bar.update(step, "loss 0.123"); }
///   bar.finish();
///
/// Terminal:  "train [##########..............]  420/1000  42%  12.3 it/s  0m34s<0m47s  loss 0.123"
/// Lines:     "train: 420/1000 (42%)  12.3 it/s  elapsed 34s  ETA 47s  loss 0.123"
class ProgressBar {
 public:
  /// `total` items of work (>= 0), `label` in front of every report, drawn on `out`.
  ProgressBar(std::int64_t total, std::string label, std::ostream& out = std::cerr,
              ProgressOptions options = {})
      : total_(total), label_(std::move(label)), out_(&out), options_(std::move(options)) {
    ddpm::detail::require(total >= 0, "total", total, ">= 0");
    ddpm::detail::require(options_.bar_width >= 0 && options_.bar_width <= 200, "options.bar_width",
                          options_.bar_width, "0..200");
    ddpm::detail::require(options_.redraw_seconds >= 0, "options.redraw_seconds",
                          options_.redraw_seconds, ">= 0");
    ddpm::detail::require(options_.line_fraction > 0 && options_.line_fraction <= 1,
                          "options.line_fraction", options_.line_fraction, "(0, 1]");
    ddpm::detail::require(options_.line_seconds > 0, "options.line_seconds", options_.line_seconds,
                          "> 0");
    ddpm::detail::require(options_.time_limit_seconds >= 0, "options.time_limit_seconds",
                          options_.time_limit_seconds, ">= 0 (0: no limit)");
    if (!options_.clock) {
      options_.clock = [] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
      };
    }
    terminal_ = options_.mode == ProgressMode::terminal ||
                (options_.mode == ProgressMode::automatic && is_terminal(out));
    start_ = options_.clock();
    last_draw_ = start_;
  }

  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  /// Ends an unfinished in-place bar with a newline so later output starts on a fresh line.
  ~ProgressBar() {
    try {
      if (terminal_ && drawn_ && !finished_) *out_ << '\n' << std::flush;
    } catch (...) {  // a stream set to throw must not terminate the program from a destructor
    }
  }

  /// Records that `done` of total items are finished (0 <= done <= total) and redraws if due.
  /// `extra` is shown at the end of the line, e.g. "loss 0.123". Ignored after finish().
  void update(std::int64_t done, std::string_view extra = {}) {
    ddpm::detail::require(done >= 0 && done <= total_, "done", done,
                          "0..total = " + std::to_string(total_));
    if (finished_) return;
    done_ = done;
    const double now = options_.clock();
    if (terminal_) {
      if (done < total_ && drawn_ && now - last_draw_ < options_.redraw_seconds) return;
      draw_bar(now, extra);
    } else {
      const double fraction = fraction_done(now - start_);
      const bool step_due = fraction + 1e-9 >= next_fraction_;  // 0.3 vs 3 * 0.1
      const bool time_due = now - last_draw_ >= options_.line_seconds;
      if (!step_due && !time_due) return;
      // Next line after the next whole multiple of line_fraction, however far this update jumped.
      next_fraction_ =
          (std::floor(fraction / options_.line_fraction + 1e-9) + 1) * options_.line_fraction;
      draw_line(now, extra);
    }
  }

  /// Draws the final state (done = the last update) with total time and mean rate, and ends the
  /// line. Only the first call has an effect.
  void finish(std::string_view extra = {}) {
    if (finished_) return;
    finished_ = true;
    const double now = options_.clock();
    if (terminal_) {
      draw_bar(now, extra);
      *out_ << '\n';
    } else {
      const double elapsed = now - start_;
      std::string line = label_ + ": finished " + count_text() + " in " + format_duration(elapsed) +
                         "  " + rate_text(elapsed);
      if (!extra.empty()) line.append("  ").append(extra);
      *out_ << line << '\n';
    }
    out_->flush();
  }

  /// The amount of work to do.
  [[nodiscard]] std::int64_t total() const noexcept { return total_; }
  /// The amount done so far (the last update()).
  [[nodiscard]] std::int64_t done() const noexcept { return done_; }
  /// True when drawing an in-place bar, false for lines.
  [[nodiscard]] bool is_terminal_mode() const noexcept { return terminal_; }

 private:
  /// Whether `out` is one of the standard streams and that stream is a terminal.
  static bool is_terminal(const std::ostream& out) {
#if defined(_WIN32)
    const auto tty = [](int fd) { return _isatty(fd) != 0; };
#else
    const auto tty = [](int fd) { return isatty(fd) != 0; };
#endif
    if (&out == &std::cout) return tty(1);
    if (&out == &std::cerr || &out == &std::clog) return tty(2);
    return false;
  }

  [[nodiscard]] std::string count_text() const {
    return std::to_string(done_) + "/" + std::to_string(total_);
  }
  /// The larger of the work done and, under a time limit, the time used, in [0, 1].
  [[nodiscard]] double fraction_done(double elapsed) const {
    const double work = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
    if (options_.time_limit_seconds <= 0) return work;
    return std::max(work, std::min(1.0, elapsed / options_.time_limit_seconds));
  }
  /// floor(scale * fraction_done), in exact integer arithmetic without a time limit.
  [[nodiscard]] int scaled_done(int scale, double elapsed) const {
    if (options_.time_limit_seconds > 0) return static_cast<int>(scale * fraction_done(elapsed));
    return total_ > 0 ? static_cast<int>(scale * done_ / total_) : scale;
  }
  [[nodiscard]] std::string rate_text(double elapsed) const {
    return format_rate(elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0, options_.unit);
  }
  /// Seconds left at the mean rate so far, or until the time limit if that is sooner; NaN (shown
  /// "--") before anything is done without a limit.
  [[nodiscard]] double eta(double elapsed) const {
    if (done_ >= total_) return 0.0;
    const double at_rate =
        done_ == 0 || !(elapsed > 0)
            ? std::nan("")
            : elapsed * static_cast<double>(total_ - done_) / static_cast<double>(done_);
    if (options_.time_limit_seconds <= 0) return at_rate;
    const double to_limit = std::max(0.0, options_.time_limit_seconds - elapsed);
    return std::isnan(at_rate) ? to_limit : std::min(at_rate, to_limit);
  }

  void draw_bar(double now, std::string_view extra) {
    const double elapsed = now - start_;
    const int filled = scaled_done(options_.bar_width, elapsed);
    std::string line = label_;
    if (options_.bar_width > 0) {
      line += " [" + std::string(static_cast<std::size_t>(filled), '#') +
              std::string(static_cast<std::size_t>(options_.bar_width - filled), '.') + "]";
    }
    line += "  " + count_text() + "  " + std::to_string(scaled_done(100, elapsed)) + "%  " +
            rate_text(elapsed) + "  " + format_duration(elapsed) + "<" +
            format_duration(eta(elapsed));
    if (!extra.empty()) line.append("  ").append(extra);
    // Pad with blanks so a shorter line fully covers the previous one.
    const std::size_t length = line.size();
    if (length < last_length_) line.append(last_length_ - length, ' ');
    last_length_ = length;
    *out_ << '\r' << line << std::flush;
    drawn_ = true;
    last_draw_ = now;
  }

  void draw_line(double now, std::string_view extra) {
    const double elapsed = now - start_;
    std::string line = label_ + ": " + count_text() + " (" +
                       std::to_string(scaled_done(100, elapsed)) + "%)  " + rate_text(elapsed) +
                       "  elapsed " + format_duration(elapsed) + "  ETA " +
                       format_duration(eta(elapsed));
    if (!extra.empty()) line.append("  ").append(extra);
    *out_ << line << '\n' << std::flush;
    drawn_ = true;
    last_draw_ = now;
  }

  std::int64_t total_;
  std::int64_t done_ = 0;
  std::string label_;
  std::ostream* out_;
  ProgressOptions options_;
  bool terminal_ = false;
  bool drawn_ = false;
  bool finished_ = false;
  double start_ = 0;
  double last_draw_ = 0;
  double next_fraction_ = 0;  // lines mode: the first update always prints
  std::size_t last_length_ = 0;
};

}  // namespace ddpm::io
