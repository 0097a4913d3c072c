// SPDX-License-Identifier: MIT
// Tests of strided_bound: stride 1 is the exact variational bound (the same noise draws as
// GaussianDiffusion::variational_bound), stride k sums its blocks' middle terms times their
// widths, and those blocks' quadrature is close to sums that fall steeply near t = 0.
#include "ddpm/eval/strided_bound.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <utility>
#include <vector>

namespace strided_bound_test {

namespace {

// Predicts eps = 0.1 x_t: a fixed, imperfect denoiser.
struct Shrink {
  void predict(const ddpm::Batch<double>& x, std::span<const int>, ddpm::Batch<double>& out) {
    out = 0.1 * x;
  }
};

}  // namespace

TEST_CASE("bound_blocks cover the KL terms 1 .. T-1 once, each block no wider than the stride") {
  for (const int T : {1, 2, 7, 50, 1000, 4000}) {
    for (const int stride : {1, 2, 3, 4, 10, 64, 1000}) {
      CAPTURE(T);
      CAPTURE(stride);
      const std::vector<ddpm::eval::BoundBlock> blocks = ddpm::eval::bound_blocks(T, stride);
      int next = 1;
      for (const ddpm::eval::BoundBlock& block : blocks) {
        CHECK(block.width >= 1);
        CHECK(block.width <= stride);
        CHECK(block.node >= next);
        CHECK(block.node < next + block.width);
        next += block.width;
      }
      CHECK(next == std::max(T, 1));
      if (stride == 1) CHECK(blocks.size() == static_cast<std::size_t>(T - 1));
    }
  }
  // Narrow near t = 0, where the terms change fastest: the first eight terms are evaluated alone.
  const std::vector<ddpm::eval::BoundBlock> blocks = ddpm::eval::bound_blocks(1000, 10);
  for (int s = 0; s < 7; ++s) CHECK(blocks[static_cast<std::size_t>(s)].width == 1);
  CHECK(blocks.back().width <= 10);
  CHECK(blocks.size() < 120);  // about T/stride + 4.5 ln(stride)
  CHECK_THROWS_WITH(ddpm::eval::bound_blocks(1000, 0),
                    doctest::Contains("invalid stride = 0; allowed: >= 1"));
}

TEST_CASE("strided_bound with stride 1 is the variational bound, stride 5 sums its blocks") {
  const ddpm::GaussianDiffusion<double> diffusion(ddpm::NoiseSchedule::linear(50));
  ddpm::Batch<double> x0(6, 3);
  ddpm::CounterRng(2).fill_normal(x0, ddpm::stream::user, 0, 0);
  Shrink model;
  const ddpm::CounterRng rng(9);
  int calls = 0;
  const ddpm::eval::BoundEstimate exact =
      ddpm::eval::strided_bound(diffusion, model, x0, 1, rng, [&](int, int) { ++calls; });
  CHECK(calls == 50);
  const ddpm::VariationalBound<double> reference = diffusion.variational_bound(model, x0, rng);
  // Sums in another order: equal to rounding.
  CHECK(exact.total == doctest::Approx(reference.total.mean()).epsilon(1e-12));
  CHECK(exact.prior == doctest::Approx(reference.prior.mean()).epsilon(1e-12));
  CHECK(exact.unit == "nats/dim");
  CHECK(exact.n == 6);
  int strided_calls = 0;
  const ddpm::eval::BoundEstimate strided =
      ddpm::eval::strided_bound(diffusion, model, x0, 5, rng, [&](int, int) { ++strided_calls; });
  // Each block's term of the full bound (the same noise) times its width.
  double kl = 0;
  const std::vector<ddpm::eval::BoundBlock> blocks = ddpm::eval::bound_blocks(50, 5);
  for (const ddpm::eval::BoundBlock& block : blocks) {
    kl += block.width * reference.terms.col(block.node).mean();
  }
  CHECK(strided_calls == static_cast<int>(blocks.size()) + 1);
  CHECK(strided.kl == doctest::Approx(kl).epsilon(1e-12));
  CHECK(strided.decoder == exact.decoder);
  CHECK(strided.stride == 5);
}

TEST_CASE("bound_blocks' middle terms times widths are within 0.5 % of sums that fall steeply") {
  // The quadrature alone, on term profiles like the bound's (steep near t = 0, flat further out);
  // a model's terms add their own noise, one draw per block.
  const std::vector<std::pair<const char*, double (*)(double)>> profiles{
      {"1/t", [](double t) { return 1 / t; }},
      {"1/t^2", [](double t) { return 1 / (t * t); }},
      {"exp(-t/30)", [](double t) { return std::exp(-t / 30); }},
      {"exp(-t/300)", [](double t) { return std::exp(-t / 300); }},
      {"5000 - t", [](double t) { return 5000 - t; }}};
  for (const auto& profile : profiles) {
    const char* name = profile.first;
    double (*f)(double) = profile.second;
    for (const int T : {50, 1000, 4000}) {
      double sum = 0;
      for (int t = 1; t < T; ++t) sum += f(t);
      for (const int stride : {2, 3, 4, 5, 10, 20, 50, 100, 1000}) {
        double estimate = 0;
        for (const ddpm::eval::BoundBlock& block : ddpm::eval::bound_blocks(T, stride)) {
          estimate += block.width * f(block.node);
        }
        INFO(name, " T = ", T, " stride = ", stride);
        CHECK(estimate == doctest::Approx(sum).epsilon(0.005));
      }
    }
  }
}

TEST_CASE("to_json(BoundEstimate) writes the parts in the metrics file's order") {
  const ddpm::eval::BoundEstimate b{.n = 4,
                                    .stride = 10,
                                    .unit = "bits/dim",
                                    .total = 3.5,
                                    .standard_error = 0.25,
                                    .decoder = 1,
                                    .kl = 2,
                                    .prior = 0.5};
  CHECK(ddpm::eval::to_json(b).text(false) ==
        "{\"n\": 4, \"stride\": 10, \"total\": 3.5, \"standard_error\": 0.25, \"decoder_L0\": 1, "
        "\"kl_terms\": 2, \"prior_LT\": 0.5}");
}

}  // namespace strided_bound_test
