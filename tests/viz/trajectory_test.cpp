// SPDX-License-Identifier: MIT
// Tests of viz::TrajectoryRecorder: which rows it keeps, at which steps, in which order.
#include "ddpm/viz/trajectory.hpp"

#include <doctest/doctest.h>

#include <functional>
#include <vector>

#include "ddpm/ddpm.hpp"
#include "support.hpp"

namespace trajectory_test {

namespace {

// A progress record whose batch holds `step` + 1000 * row + 0.1 * column, so every kept value says
// where it came from.
ddpm::Batch<double> marked_batch(ddpm::Index rows, ddpm::Index cols, int step) {
  ddpm::Batch<double> x(rows, cols);
  for (ddpm::Index i = 0; i < rows; ++i) {
    for (ddpm::Index j = 0; j < cols; ++j) x(i, j) = step + 1000.0 * i + 0.1 * j;
  }
  return x;
}

}  // namespace

TEST_CASE("the trajectory keeps the first rows after steps max(1, (k + 1) total / frames)") {
  SUBCASE("23 steps, 4 frames, 3 of 5 rows: steps 5, 11, 17, 23") {
    ddpm::viz::TrajectoryRecorder<double> trajectory(3, 2, 4);
    for (int done = 1; done <= 23; ++done) {
      const ddpm::Batch<double> x = marked_batch(5, 2, done);
      trajectory(ddpm::SamplerProgress<double>{done, 23, 23 - done, x});
    }
    const ddpm::Batch<double>& f = trajectory.frames();
    REQUIRE(f.rows() == 12);
    REQUIRE(f.cols() == 2);
    CHECK(trajectory.frame_count() == 4);
    const std::vector<int> steps = {5, 11, 17, 23};
    for (ddpm::Index i = 0; i < 3; ++i) {
      for (int k = 0; k < 4; ++k) {
        CHECK(f(i * 4 + k, 0) == steps[static_cast<std::size_t>(k)] + 1000.0 * i);
        CHECK(f(i * 4 + k, 1) == steps[static_cast<std::size_t>(k)] + 1000.0 * i + 0.1);
      }
    }
  }
  SUBCASE("more frames than steps: the early frames repeat step 1, and rows beyond a batch are 0") {
    ddpm::viz::TrajectoryRecorder<double> trajectory(4, 1, 5);
    for (int done = 1; done <= 2; ++done) {
      const ddpm::Batch<double> x = marked_batch(2, 1, done);
      trajectory(ddpm::SamplerProgress<double>{done, 2, 2 - done, x});
    }
    const ddpm::Batch<double>& f = trajectory.frames();
    REQUIRE(f.rows() == 20);
    // (k + 1) * 2 / 5 = 0, 0, 1, 1, 2: frames 0..3 after step 1, frame 4 after step 2.
    for (int k = 0; k < 5; ++k) CHECK(f(k, 0) == (k == 4 ? 2.0 : 1.0));
    for (int k = 0; k < 5; ++k) CHECK(f(5 + k, 0) == (k == 4 ? 1002.0 : 1001.0));
    CHECK((f.bottomRows(10).array() == 0.0).all());
  }
  SUBCASE("the last frame is the finished samples of a real sampler") {
    const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(40);
    ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), schedule);
    ddpm::viz::TrajectoryRecorder<double> trajectory(3, 2, 10);
    const ddpm::Batch<double> x =
        ddpm::AncestralSampler<double>(ddpm::GaussianDiffusion<double>(schedule))
            .sample(model, 6, 2, ddpm::CounterRng(3), 0, std::ref(trajectory));
    for (ddpm::Index i = 0; i < 3; ++i) CHECK(trajectory.frames().row(i * 10 + 9) == x.row(i));
  }
}

TEST_CASE("the trajectory recorder refuses bad sizes and a batch of another dimension") {
  CHECK_THROWS_WITH_AS(ddpm::viz::TrajectoryRecorder<float>(0, 2, 10),
                       doctest::Contains("rows = 0"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::viz::TrajectoryRecorder<float>(2, 2, 0),
                       doctest::Contains("frames = 0"), ddpm::InvalidArgument);
  ddpm::viz::TrajectoryRecorder<float> trajectory(2, 2, 10);
  const ddpm::Batch<float> x = ddpm::Batch<float>::Zero(2, 3);
  CHECK_THROWS_WITH_AS(trajectory(ddpm::SamplerProgress<float>{1, 10, 9, x}),
                       doctest::Contains("the recorder's dimension (2 columns)"),
                       ddpm::InvalidArgument);
}

}  // namespace trajectory_test
