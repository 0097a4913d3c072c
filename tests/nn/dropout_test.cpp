// SPDX-License-Identifier: MIT
// Tests of nn::Dropout: the identity cases, the drop rate and the 1 / (1 - p) scaling, backward
// with the forward's mask, reproducibility from (seed, layer, draw) and bad inputs.
#include "ddpm/nn/dropout.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "support.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dropout_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::Dropout;

using ddpm::test::random_batch;

const ddpm::CounterRng kRng(17);

}  // namespace

TEST_CASE_TEMPLATE("Dropout is the identity with p = 0 or outside training", Real, float, double) {
  const Batch<Real> x = random_batch<Real>(30, 7, 1);
  Batch<Real> y(30, 7);
  Batch<Real> dx(30, 7);
  const Batch<Real> dy = random_batch<Real>(30, 7, 2);

  Dropout<Real> none(0.0);
  none.forward(x, y, kRng, 0, 0, /*training=*/true);
  CHECK(y == x);
  none.backward(dy, dx);
  CHECK(dx == dy);

  Dropout<Real> half(0.5);
  CHECK(half.p() == 0.5);
  half.forward(x, y, kRng, 0, 0, /*training=*/false);
  CHECK(y == x);
  half.backward(dy, dx);
  CHECK(dx == dy);

  Dropout<Real> unset;  // default-constructed: p = 0
  CHECK(unset.p() == 0.0);
  unset.forward(x, y, kRng, 0, 0, true);
  CHECK(y == x);
}

TEST_CASE_TEMPLATE("Dropout drops a fraction p and scales the rest by 1 / (1 - p)", Real, float,
                   double) {
  // 100,000 elements: the dropped fraction has standard error sqrt(p (1 - p) / n) = 1.45e-3 at
  // p = 0.3; 4 standard errors fail a correct mask with probability 6e-5.
  for (const double p : {0.1, 0.3, 0.9}) {
    CAPTURE(p);
    const Index rows = 250;
    const Index cols = 400;
    const Batch<Real> x = random_batch<Real>(rows, cols, 3);
    Batch<Real> y(rows, cols);
    Dropout<Real> drop(p);
    drop.forward(x, y, kRng, 2, 5, true);
    const auto n = static_cast<double>(rows * cols);
    const double dropped = static_cast<double>((y.array() == Real(0)).count()) / n;
    CHECK(std::abs(dropped - p) < 4.0 * std::sqrt(p * (1.0 - p) / n));
    const auto scale = static_cast<Real>(1.0 / (1.0 - p));
    bool kept_scaled = true;
    for (Index i = 0; i < rows; ++i) {
      for (Index j = 0; j < cols; ++j) {
        if (y(i, j) != Real(0)) kept_scaled = kept_scaled && y(i, j) == x(i, j) * scale;
      }
    }
    CHECK(kept_scaled);

    SUBCASE("backward applies the same mask and scale") {
      const Batch<Real> dy = random_batch<Real>(rows, cols, 4);
      Batch<Real> dx(rows, cols);
      drop.backward(dy, dx);
      const Batch<Real> expected =
          ((y.array() != Real(0)).template cast<Real>() * scale * dy.array()).matrix();
      CHECK(dx == expected);
      Batch<Real> in_place = dy;
      drop.backward(in_place, in_place);
      CHECK(in_place == expected);
    }
  }
}

TEST_CASE("Dropout masks are a function of (seed, layer, draw) and the element index") {
  const Batch<double> x = Batch<double>::Ones(37, 13);  // 13 columns: rows straddle Philox blocks
  Dropout<double> drop(0.5);
  auto mask = [&](const ddpm::CounterRng& rng, std::uint32_t layer, std::uint32_t draw) {
    Batch<double> y(37, 13);
    drop.forward(x, y, rng, layer, draw, true);
    return y;
  };
  const Batch<double> base = mask(kRng, 1, 7);
  CHECK(mask(kRng, 1, 7) == base);
  CHECK(mask(kRng, 1, 8) != base);
  CHECK(mask(kRng, 2, 7) != base);
  CHECK(mask(ddpm::CounterRng(18), 1, 7) != base);

  SUBCASE("element e keeps its value iff word e % 4 of block e / 4 is >= p * 2^32") {
    for (Index e = 0; e < x.size(); ++e) {
      const auto word = kRng.bits(ddpm::stream::dropout, 7, 1, static_cast<std::uint32_t>(e / 4));
      const bool keep = word[static_cast<std::size_t>(e % 4)] >= 2147483648u;
      CHECK((base(e / 13, e % 13) != 0.0) == keep);
    }
  }
  SUBCASE("the row stride and in-place use do not change the mask") {
    Batch<double> wide = Batch<double>::Zero(37, 20);
    wide.middleCols(3, 13).setOnes();
    drop.forward(wide.middleCols(3, 13), wide.middleCols(3, 13), kRng, 1, 7, true);
    CHECK(wide.middleCols(3, 13) == base);
    CHECK(wide.leftCols(3).isZero());
  }
#ifdef _OPENMP
  SUBCASE("the thread count does not change the mask") {
    const Batch<float> big = random_batch<float>(300, 129, 5);
    Dropout<float> f(0.2);
    Batch<float> one(300, 129);
    Batch<float> two(300, 129);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    f.forward(big, one, kRng, 3, 4, true);
    omp_set_num_threads(2);
    f.forward(big, two, kRng, 3, 4, true);
    omp_set_num_threads(saved);
    CHECK(one == two);
  }
#endif
}

TEST_CASE("Dropout rejects bad arguments, naming them") {
  DDPM_CHECK_INVALID("dropout", Dropout<float>(1.0));
  DDPM_CHECK_INVALID("dropout", Dropout<float>(-0.1));
  DDPM_CHECK_INVALID("dropout", Dropout<float>(std::numeric_limits<double>::quiet_NaN()));

  Dropout<double> drop(0.5);
  const Batch<double> x = random_batch(6, 4, 6);
  Batch<double> bad(6, 5);
  DDPM_CHECK_INVALID("y", drop.forward(x, bad, kRng, 0, 0, true));
  Batch<double> y(6, 4);
  drop.forward(x, y, kRng, 0, 0, true);
  Batch<double> dx(6, 4);
  DDPM_CHECK_INVALID("dx", drop.backward(y, bad));
  const Batch<double> other = random_batch(6, 5, 7);
  DDPM_CHECK_INVALID("dy", drop.backward(other, bad));
}

}  // namespace dropout_test
