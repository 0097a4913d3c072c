// SPDX-License-Identifier: MIT
// Tests of ddpm/io/progress.hpp: time and rate formats, line and terminal modes on a fake clock.
#include "ddpm/io/progress.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace progress_test {

namespace {

/// A clock the test advances by hand; ProgressOptions keeps a copy of the lambda, so share state.
struct FakeClock {
  std::shared_ptr<double> now = std::make_shared<double>(1000.0);
  [[nodiscard]] std::function<double()> function() const {
    return [now = now] { return *now; };
  }
  void advance(double seconds) const { *now += seconds; }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("format_duration") {
  using ddpm::io::format_duration;
  CHECK(format_duration(0.0) == "0.0s");
  CHECK(format_duration(0.42) == "0.4s");
  CHECK(format_duration(9.3) == "9.3s");
  CHECK(format_duration(42.4) == "42s");
  CHECK(format_duration(59.7) == "1m00s");
  CHECK(format_duration(65) == "1m05s");
  CHECK(format_duration(3599) == "59m59s");
  CHECK(format_duration(3725) == "1h02m");
  CHECK(format_duration(90061) == "1d01h");
  CHECK(format_duration(-1) == "--");
  CHECK(format_duration(std::numeric_limits<double>::quiet_NaN()) == "--");
  CHECK(format_duration(std::numeric_limits<double>::infinity()) == "--");
}

TEST_CASE("format_rate") {
  using ddpm::io::format_rate;
  CHECK(format_rate(12.34) == "12.3 it/s");
  CHECK(format_rate(1.5) == "1.50 it/s");
  CHECK(format_rate(456.7) == "457 it/s");
  CHECK(format_rate(4567) == "4.57k it/s");
  CHECK(format_rate(1.2e6, "img") == "1.20M img/s");
  CHECK(format_rate(0.4) == "2.5s/it");
  CHECK(format_rate(1.0 / 65, "step") == "1m05s/step");
  CHECK(format_rate(0) == "-- it/s");
}

TEST_CASE("lines mode prints every 10 % with rate and ETA") {
  std::ostringstream out;
  FakeClock clock;
  ddpm::io::ProgressBar bar(100, "train", out,
                            {.mode = ddpm::io::ProgressMode::lines, .clock = clock.function()});
  CHECK_FALSE(bar.is_terminal_mode());
  for (int done = 1; done <= 100; ++done) {
    clock.advance(0.1);  // 10 items per second
    bar.update(done, "loss 0.5");
  }
  bar.finish("loss 0.25");
  const std::vector<std::string> lines = lines_of(out.str());
  CHECK(out.str().find('\r') == std::string::npos);
  REQUIRE(lines.size() == 12);  // at 1 %, 10 %, 20 %, ..., 100 %, and the final summary
  CHECK(lines[0] == "train: 1/100 (1%)  10.0 it/s  elapsed 0.1s  ETA 9.9s  loss 0.5");
  CHECK(lines[5] == "train: 50/100 (50%)  10.0 it/s  elapsed 5.0s  ETA 5.0s  loss 0.5");
  CHECK(lines[10] == "train: 100/100 (100%)  10.0 it/s  elapsed 10s  ETA 0.0s  loss 0.5");
  CHECK(lines[11] == "train: finished 100/100 in 10s  10.0 it/s  loss 0.25");
}

TEST_CASE("lines mode also prints after line_seconds when progress is slow") {
  std::ostringstream out;
  FakeClock clock;
  ddpm::io::ProgressBar bar(1000, "sample", out,
                            {.mode = ddpm::io::ProgressMode::lines,
                             .unit = "step",
                             .line_seconds = 30,
                             .clock = clock.function()});
  for (int done = 1; done <= 20; ++done) {
    clock.advance(10);  // 0.1 step/s: 20 updates span 200 s, far from the next 10 %
    bar.update(done);
  }
  const std::vector<std::string> lines = lines_of(out.str());
  // The first update, then one line per 30 s: at 40 s, 70 s, ..., 190 s.
  REQUIRE(lines.size() == 7);
  CHECK(lines[1] == "sample: 4/1000 (0%)  10s/step  elapsed 40s  ETA 2h46m");
}

TEST_CASE("terminal mode redraws in place, at most every redraw_seconds") {
  std::ostringstream out;
  FakeClock clock;
  {
    ddpm::io::ProgressBar bar(
        1000, "train", out,
        {.mode = ddpm::io::ProgressMode::terminal, .bar_width = 10, .clock = clock.function()});
    CHECK(bar.is_terminal_mode());
    for (int done = 1; done <= 1000; ++done) {
      clock.advance(0.001);  // 1000 updates in one second
      bar.update(done);
    }
    bar.finish();
  }
  const std::string text = out.str();
  const auto redraws = std::count(text.begin(), text.end(), '\r');
  CHECK(redraws >= 10);
  CHECK(redraws <= 13);  // about one per 0.1 s, plus the last update and finish()
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  CHECK(text.back() == '\n');
  const std::string last = text.substr(text.rfind('\r') + 1);
  CHECK(last.starts_with("train [##########]  1000/1000  100%  1.00k it/s  1.0s<0.0s"));
}

TEST_CASE("terminal mode pads shorter lines and ends an unfinished bar with a newline") {
  std::ostringstream out;
  FakeClock clock;
  {
    ddpm::io::ProgressBar bar(10, "x", out,
                              {.mode = ddpm::io::ProgressMode::terminal,
                               .bar_width = 0,
                               .redraw_seconds = 0,
                               .clock = clock.function()});
    clock.advance(1);
    bar.update(1, "a long extra text");
    clock.advance(1);
    bar.update(2);
  }
  const std::string text = out.str();
  const std::string first = text.substr(1, text.find('\r', 1) - 1);
  const std::string second = text.substr(text.find('\r', 1) + 1);
  CHECK(second.size() == first.size() + 1);  // padded to cover, plus the destructor's newline
  CHECK(text.back() == '\n');
}

TEST_CASE("ProgressBar validates its arguments and ignores updates after finish") {
  std::ostringstream out;
  CHECK_THROWS_AS(ddpm::io::ProgressBar(-1, "x", out), ddpm::InvalidArgument);
  ddpm::io::ProgressBar bar(5, "x", out);  // automatic mode on a string stream: lines
  CHECK_FALSE(bar.is_terminal_mode());
  CHECK_THROWS_WITH_AS(bar.update(6), doctest::Contains("done = 6; allowed: 0..total = 5"),
                       ddpm::InvalidArgument);
  bar.update(5);
  bar.finish();
  const std::string after_finish = out.str();
  bar.update(3);
  bar.finish();
  CHECK(out.str() == after_finish);
  CHECK(bar.done() == 5);
}

TEST_CASE("a time limit sets the percentage, the bar and the ETA when it ends the work first") {
  std::ostringstream out;
  FakeClock clock;
  ddpm::io::ProgressBar lines(100'000'000, "train", out,
                              {.mode = ddpm::io::ProgressMode::lines,
                               .unit = "step",
                               .line_seconds = 1000,
                               .time_limit_seconds = 900,
                               .clock = clock.function()});
  for (int done = 1; done <= 1800; ++done) {
    clock.advance(0.5);  // 1800 steps in 900 s: far from the step count, at the time limit
    lines.update(done);
  }
  const std::vector<std::string> text = lines_of(out.str());
  // The first update, then each further tenth of the 900 s: at 90 s, 180 s, ..., 900 s.
  REQUIRE(text.size() == 11);
  CHECK(text[0] == "train: 1/100000000 (0%)  2.00 step/s  elapsed 0.5s  ETA 15m00s");
  CHECK(text[5] == "train: 900/100000000 (50%)  2.00 step/s  elapsed 7m30s  ETA 7m30s");
  CHECK(text[10] == "train: 1800/100000000 (100%)  2.00 step/s  elapsed 15m00s  ETA 0.0s");

  std::ostringstream bar_out;
  ddpm::io::ProgressBar bar(100, "x", bar_out,
                            {.mode = ddpm::io::ProgressMode::terminal,
                             .bar_width = 10,
                             .redraw_seconds = 0,
                             .time_limit_seconds = 3600,
                             .clock = clock.function()});
  clock.advance(50);
  bar.update(10);  // the step count is the nearer end: the limit changes nothing
  CHECK(bar_out.str() == "\rx [#.........]  10/100  10%  5.0s/it  50s<7m30s");
  clock.advance(1750);
  bar.update(20);  // half the hour, a fifth of the work: the time limit is the nearer end
  CHECK(bar_out.str().substr(bar_out.str().rfind('\r')) ==
        "\rx [#####.....]  20/100  50%  1m30s/it  30m00s<30m00s");
}

}  // namespace progress_test
