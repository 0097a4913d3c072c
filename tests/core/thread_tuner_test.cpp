// SPDX-License-Identifier: MIT
// Tests of ThreadTuner: its candidates, the choice from fed step times, reprobing on drift and on
// time, OpenMP's count set and restored; and a Trainer run whose thread count changes between
// steps ends bitwise where a 1-thread run does.
#include "ddpm/core/thread_tuner.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <vector>

#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/train/trainer.hpp"

namespace thread_tuner_test {

namespace {

/// Feeds `steps` steps to the tuner, each taking seconds_at(threads) for the count it chose.
template <class SecondsAt>
std::vector<int> feed(ddpm::ThreadTuner& tuner, int steps, SecondsAt seconds_at) {
  std::vector<int> counts;
  for (int i = 0; i < steps; ++i) {
    const int n = tuner.begin_step();
    counts.push_back(n);
    tuner.end_step(seconds_at(n));
  }
  return counts;
}

}  // namespace

namespace {
struct UserModel {};  // declares nothing: its thread count is left alone
struct DeclaredModel {
  static constexpr bool thread_count_invariant = true;
};
}  // namespace

static_assert(ddpm::ThreadCountInvariant<ddpm::nn::Mlp<float>>);
static_assert(ddpm::ThreadCountInvariant<ddpm::nn::UNet<double>>);
static_assert(ddpm::ThreadCountInvariant<DeclaredModel>);
static_assert(!ddpm::ThreadCountInvariant<UserModel>);

TEST_CASE("the candidates are all threads, one fewer, and the halvings down to 1") {
  CHECK(ddpm::ThreadTuner(1).candidates() == std::vector<int>{1});
  CHECK(ddpm::ThreadTuner(2).candidates() == std::vector<int>{2, 1});
  CHECK(ddpm::ThreadTuner(3).candidates() == std::vector<int>{3, 2, 1});
  CHECK(ddpm::ThreadTuner(16).candidates() == std::vector<int>{16, 15, 8, 4, 2, 1});
}

TEST_CASE("the probe tries each count for probe_steps steps and keeps the fastest") {
  const ddpm::ThreadTuner::Options options{.probe_steps = 3, .reprobe_seconds = 100.0};
  SUBCASE("quiet machine: 2 threads faster") {
    ddpm::ThreadTuner tuner(2, options);
    const std::vector<int> counts = feed(tuner, 8, [](int n) { return n == 2 ? 1.2e-3 : 1.9e-3; });
    CHECK(counts == std::vector<int>{2, 2, 2, 1, 1, 1, 2, 2});
    CHECK(tuner.threads() == 2);
    CHECK(tuner.probes() == 1);
  }
  SUBCASE("one core busy: 1 thread faster (the median ignores one fast outlier)") {
    ddpm::ThreadTuner tuner(2, options);
    int call = 0;
    const std::vector<int> counts = feed(tuner, 8, [&](int n) {
      ++call;
      return n == 2 ? (call == 1 ? 1e-4 : 15e-3) : 1.9e-3;
    });
    CHECK(counts == std::vector<int>{2, 2, 2, 1, 1, 1, 1, 1});
    CHECK(tuner.threads() == 1);
  }
}

TEST_CASE("a drift of the step time starts a new probe at once") {
  ddpm::ThreadTuner tuner(2, {.probe_steps = 3, .reprobe_seconds = 1000.0, .drift = 1.5});
  bool loaded = false;
  const auto seconds_at = [&](int n) { return n == 2 ? (loaded ? 15e-3 : 1.2e-3) : 1.9e-3; };
  feed(tuner, 10, seconds_at);
  REQUIRE(tuner.threads() == 2);
  loaded = true;  // another process takes a core
  // 2 slow steps make the window's median slow, then the probe: 3 at 2 threads, 3 at 1, then 1.
  const std::vector<int> counts = feed(tuner, 11, seconds_at);
  CHECK(counts == std::vector<int>{2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1});
  CHECK(tuner.threads() == 1);
  CHECK(tuner.probes() == 2);
  // The same times do not drift: no further probe for 1000 s.
  feed(tuner, 100, seconds_at);
  CHECK(tuner.probes() == 2);
}

TEST_CASE("probes repeat after reprobe_seconds, or 50 times the probe's duration when longer") {
  SUBCASE("short steps: every reprobe_seconds") {
    constexpr double step = 1.0 / 1024;  // sums exactly
    ddpm::ThreadTuner tuner(2, {.probe_steps = 2, .reprobe_seconds = 1.0});
    feed(tuner, 4, [](int) { return step; });  // the first probe: 4 steps, 50 x 4 ms < 1 s
    REQUIRE(tuner.probes() == 1);
    feed(tuner, 1023, [](int) { return step; });
    CHECK(tuner.probes() == 1);
    feed(tuner, 1 + 4, [](int) { return step; });  // 1 s, then the second probe
    CHECK(tuner.probes() == 2);
  }
  SUBCASE("long steps: every 50 probe durations") {
    ddpm::ThreadTuner tuner(2, {.probe_steps = 2, .reprobe_seconds = 1.0});
    feed(tuner, 4, [](int) { return 0.5; });  // a 2 s probe: the next after 100 s
    REQUIRE(tuner.probes() == 1);
    feed(tuner, 199, [](int) { return 0.5; });
    CHECK(tuner.probes() == 1);
    feed(tuner, 1 + 4, [](int) { return 0.5; });
    CHECK(tuner.probes() == 2);
  }
}

#ifdef _OPENMP
TEST_CASE("the tuner sets OpenMP's thread count per step and restores it when destroyed") {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(3);
  {
    ddpm::ThreadTuner tuner(2, {.probe_steps = 1});
    CHECK(tuner.begin_step() == 2);
    CHECK(omp_get_max_threads() == 2);
    tuner.end_step(1.0);
    CHECK(tuner.begin_step() == 1);
    CHECK(omp_get_max_threads() == 1);
  }
  CHECK(omp_get_max_threads() == 3);
  omp_set_num_threads(saved);
}
#endif

TEST_CASE("bad tuner options are refused, naming the parameter") {
  CHECK_THROWS_WITH_AS(ddpm::ThreadTuner(0), doctest::Contains("max_threads = 0"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::ThreadTuner(2, {.probe_steps = 0}),
                       doctest::Contains("probe_steps = 0"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::ThreadTuner(2, {.reprobe_seconds = -1.0}),
                       doctest::Contains("reprobe_seconds = -1"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::ThreadTuner(2, {.drift = 1.0}), doctest::Contains("drift = 1"),
                       ddpm::InvalidArgument);
}

#ifdef _OPENMP
TEST_CASE("a Trainer run whose thread count the tuner changes ends bitwise where 1 thread does") {
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(50), {});
  ddpm::nn::MlpConfig config;
  config.width = 64;
  config.depth = 2;
  config.seed = 4;
  const ddpm::train::TrainerOptions options{
      .batch_size = 256, .steps = 30, .adam = {.learning_rate = 1e-3}, .seed = 9};
  const auto data = [](std::int64_t step, ddpm::Index n, ddpm::Batch<float>& out) {
    out = ddpm::data::sample_toy2d<float>(ddpm::data::ToyDataset::moons, n, 2, step * n);
  };
  using Trainer = ddpm::train::Trainer<float, ddpm::nn::Mlp<float>>;
  const auto train = [&](bool tune, int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    ddpm::nn::Mlp<float> model(config);
    Trainer trainer(model, diffusion, options);
    Trainer::RunOptions run;
    run.tune_threads = tune;
    trainer.run(data, run, [](ddpm::train::Checkpoint&) {});
    const int after = omp_get_max_threads();
    omp_set_num_threads(saved);
    const auto values = model.parameter_values();
    return std::pair{std::vector<float>(values.begin(), values.end()), after};
  };
  // 2 threads for 5 steps, 1 for 5, then the faster: the count changes at least once.
  const auto [tuned, threads_after] = train(true, 2);
  const auto [single, unused] = train(false, 1);
  CHECK(threads_after == 2);  // run() put OpenMP's count back
  CHECK(tuned == single);
}
#endif

}  // namespace thread_tuner_test
