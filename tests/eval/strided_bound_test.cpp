// SPDX-License-Identifier: MIT
// Tests of strided_bound: stride 1 is the exact variational bound (the same noise draws as
// GaussianDiffusion::variational_bound), and stride k sums k times every k-th of its terms.
#include "ddpm/eval/strided_bound.hpp"

#include <doctest/doctest.h>

#include <span>

namespace {

// Predicts eps = 0.1 x_t: a fixed, imperfect denoiser.
struct Shrink {
  void predict(const ddpm::Batch<double>& x, std::span<const int>, ddpm::Batch<double>& out) {
    out = 0.1 * x;
  }
};

}  // namespace

TEST_CASE("strided_bound with stride 1 is the variational bound; stride 5 sums every 5th term") {
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
  const ddpm::eval::BoundEstimate strided =
      ddpm::eval::strided_bound(diffusion, model, x0, 5, rng, [](int, int) {});
  // Stride 5: 5 x (L_5 + L_10 + ... + L_45), the same terms as the full bound's.
  double kl = 0;
  for (int s = 5; s < 50; s += 5) kl += 5.0 * reference.terms.col(s).mean();
  CHECK(strided.kl == doctest::Approx(kl).epsilon(1e-12));
  CHECK(strided.decoder == exact.decoder);
  CHECK(strided.stride == 5);
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
