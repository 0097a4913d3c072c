// SPDX-License-Identifier: MIT
// Tests of the sinusoidal timestep embedding (hand-computed values, cache vs direct evaluation)
// and of the learned label embedding (lookup, "no label" row, gradient).
#include "ddpm/nn/embedding.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"

namespace embedding_test {

using ddpm::Batch;
using ddpm::Index;

TEST_CASE("sinusoidal embedding matches hand-computed values") {
  SUBCASE("dim 4, t = 1: half = 2, freqs = [1, 10000^-1/2]") {
    ddpm::nn::SinusoidalEmbedding<double> emb(4);
    const std::array<int, 1> t{1};
    Batch<double> out(1, 4);
    emb.forward(t, out);
    CHECK(out(0, 0) == doctest::Approx(std::cos(1.0)).epsilon(1e-15));
    CHECK(out(0, 1) == doctest::Approx(std::cos(0.01)).epsilon(1e-15));
    CHECK(out(0, 2) == doctest::Approx(std::sin(1.0)).epsilon(1e-15));
    CHECK(out(0, 3) == doctest::Approx(0.00999983333416666).epsilon(1e-14));
  }
  SUBCASE("odd dim 5, t = 3: the last component is zero padding") {
    ddpm::nn::SinusoidalEmbedding<double> emb(5);
    const std::array<int, 1> t{3};
    Batch<double> out(1, 5);
    emb.forward(t, out);
    CHECK(out(0, 0) == doctest::Approx(-0.9899924966004454).epsilon(1e-14));
    CHECK(out(0, 1) == doctest::Approx(0.9995500337489875).epsilon(1e-14));
    CHECK(out(0, 2) == doctest::Approx(0.1411200080598672).epsilon(1e-14));
    CHECK(out(0, 3) == doctest::Approx(0.029995500202495647).epsilon(1e-14));
    CHECK(out(0, 4) == 0.0);
  }
  SUBCASE("dim 64 (ToyMLP): t = 0 is [1 x 32, 0 x 32]; t = 10 and 999 at a few components") {
    ddpm::nn::SinusoidalEmbedding<double> emb(64);
    const std::array<int, 3> t{0, 10, 999};
    Batch<double> out(3, 64);
    emb.forward(t, out);
    CHECK(out.row(0).head(32).minCoeff() == 1.0);
    CHECK(out.row(0).tail(32).cwiseAbs().maxCoeff() == 0.0);
    // cos(10 * exp(-ln(1e4) * 5 / 32)) and its sine partner (component 32 + 5).
    CHECK(out(1, 5) == doctest::Approx(-0.7177582350362885).epsilon(1e-13));
    CHECK(out(1, 37) == doctest::Approx(0.6962924069940674).epsilon(1e-13));
    CHECK(out(1, 31) == doctest::Approx(0.9999991108604267).epsilon(1e-13));
    CHECK(out(1, 63) == doctest::Approx(0.0013335210369344078).epsilon(1e-12));
    CHECK(out(2, 0) == doctest::Approx(0.9996498529808264).epsilon(1e-13));
    CHECK(out(2, 1) == doctest::Approx(0.1252033169537857).epsilon(1e-12));
    CHECK(out(2, 32) == doctest::Approx(-0.026460752737064126).epsilon(1e-12));
    CHECK(out(2, 42) == doctest::Approx(-0.36233263710853897).epsilon(1e-12));
  }
}

TEST_CASE("sinusoidal embedding: cached rows equal direct evaluation, also beyond the cache") {
  ddpm::nn::SinusoidalEmbedding<float> emb(7);
  const int beyond = ddpm::nn::SinusoidalEmbedding<float>::kMaxCachedTimestep + 5;
  const std::array<int, 4> t{5, 0, 1500, beyond};
  Batch<float> out(4, 7);
  emb.forward(t, out);
  for (Index r = 0; r < 4; ++r) {
    for (Index j = 0; j < 7; ++j) {
      const auto expected = static_cast<float>(ddpm::nn::SinusoidalEmbedding<float>::value(
          t[static_cast<std::size_t>(r)], j, 7, 10000.0));
      CHECK(out(r, j) == expected);  // both rounded from the same double
    }
  }
}

TEST_CASE("sinusoidal embedding writes into a column block and rejects bad input") {
  ddpm::nn::SinusoidalEmbedding<double> emb(4);
  Batch<double> wide = Batch<double>::Zero(2, 6);
  const std::array<int, 2> t{1, 2};
  emb.forward(t, wide.rightCols(4));
  CHECK(wide(0, 0) == 0.0);
  CHECK(wide(0, 2) == doctest::Approx(std::cos(1.0)));
  const std::array<int, 2> negative{1, -3};
  CHECK_THROWS_WITH_AS(emb.forward(negative, wide.rightCols(4)),
                       doctest::Contains("invalid t = -3; allowed: >= 0"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::nn::SinusoidalEmbedding<double>(0),
                       doctest::Contains("invalid embedding_dim = 0"), ddpm::InvalidArgument);
}

TEST_CASE("label embedding: lookup, no-label row, and scatter-added gradient") {
  ddpm::nn::ParameterStore<double> store;
  ddpm::nn::LabelEmbedding<double> labels(store, "label_embedding", 3, 2);
  store.allocate();
  labels.bind(store);
  labels.initialize(ddpm::CounterRng(4), 9);
  CHECK(store.blocks()[0].name == "label_embedding.weight");
  CHECK(store.size() == 4 * 2);  // three classes + the "no label" row

  const std::array<int, 4> y{2, ddpm::kNoLabel, 2, 0};
  Batch<double> out = Batch<double>::Constant(4, 2, 1.0);
  labels.add_to(y, out);
  CHECK(out(0, 1) == doctest::Approx(1.0 + labels.weight()(2, 1)));
  CHECK(out(1, 0) == doctest::Approx(1.0 + labels.weight()(3, 0)));
  CHECK(out(3, 0) == doctest::Approx(1.0 + labels.weight()(0, 0)));

  Batch<double> d_out(4, 2);
  d_out << 1, 2, 3, 4, 5, 6, 7, 8;
  labels.backward(y, d_out);
  CHECK(labels.weight_grad()(2, 0) == 6.0);  // rows 0 and 2 share label 2
  CHECK(labels.weight_grad()(2, 1) == 8.0);
  CHECK(labels.weight_grad()(3, 1) == 4.0);
  CHECK(labels.weight_grad()(0, 0) == 7.0);
  CHECK(labels.weight_grad()(1, 0) == 0.0);

  const std::array<int, 1> bad{3};
  CHECK_THROWS_WITH_AS(labels.check_labels(bad),
                       doctest::Contains("invalid label = 3; allowed: 0..2 or kNoLabel (-1)"),
                       ddpm::InvalidArgument);
}

TEST_CASE(
    "SinusoidalEmbedding of real t: runs of equal t computed once give each row's own value") {
  ddpm::nn::SinusoidalEmbedding<float> embedding(16, 10000.0);
  const std::vector<double> t = {3.5, 3.5, 7.25, 7.25, 7.25, 3.5, 0.0, 999.0, 999.0};
  ddpm::Batch<float> out(static_cast<ddpm::Index>(t.size()), 16);
  embedding.forward(std::span<const double>(t), out);
  for (std::size_t r = 0; r < t.size(); ++r) {
    for (ddpm::Index j = 0; j < 16; ++j) {
      CHECK(out(static_cast<ddpm::Index>(r), j) ==
            static_cast<float>(ddpm::nn::SinusoidalEmbedding<float>::value(t[r], j, 16, 10000.0)));
    }
  }
}

}  // namespace embedding_test
