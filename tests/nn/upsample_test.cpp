// SPDX-License-Identifier: MIT
// Tests of nn::upsample_nearest2x: values by hand, the backward pass as the exact adjoint of the
// forward pass, and the checks of bad shapes.
#include "ddpm/nn/upsample.hpp"

#include <doctest/doctest.h>

#include "ddpm/core/error.hpp"
#include "ddpm/nn/image.hpp"
#include "support.hpp"

namespace upsample_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::ImageShape;
using ddpm::test::random_batch;

}  // namespace

TEST_CASE_TEMPLATE("upsample_nearest2x copies each pixel into a 2x2 block", Real, float, double) {
  // Two 2x3 images of 2 channels; pixel (n, y, x) holds 100 n + 10 y + x in channel 0 and its
  // negative in channel 1.
  const ImageShape in{2, 2, 3, 2};
  Batch<Real> x(in.pixels(), 2);
  for (Index n = 0; n < 2; ++n) {
    for (Index y = 0; y < 2; ++y) {
      for (Index c = 0; c < 3; ++c) {
        const Index row = (n * 2 + y) * 3 + c;
        x(row, 0) = static_cast<Real>(100 * n + 10 * y + c);
        x(row, 1) = -x(row, 0);
      }
    }
  }
  Batch<Real> y(4 * in.pixels(), 2);
  ddpm::nn::upsample_nearest2x<Real>(x, in, y);
  for (Index n = 0; n < 2; ++n) {
    for (Index oy = 0; oy < 4; ++oy) {
      for (Index ox = 0; ox < 6; ++ox) {
        const Index row = (n * 4 + oy) * 6 + ox;
        CAPTURE(row);
        CHECK(y(row, 0) == static_cast<Real>(100 * n + 10 * (oy / 2) + ox / 2));
        CHECK(y(row, 1) == -y(row, 0));
      }
    }
  }

  SUBCASE("x and y may be column blocks of wider matrices") {
    Batch<Real> wide_x = Batch<Real>::Constant(in.pixels(), 5, Real(7));
    wide_x.middleCols(1, 2) = x;
    Batch<Real> wide_y = Batch<Real>::Zero(4 * in.pixels(), 4);
    ddpm::nn::upsample_nearest2x<Real>(wide_x.middleCols(1, 2), in, wide_y.middleCols(2, 2));
    CHECK((wide_y.middleCols(2, 2) - y).cwiseAbs().maxCoeff() == 0);
    CHECK(wide_y.leftCols(2).cwiseAbs().maxCoeff() == 0);
  }
  SUBCASE("backward sums each 2x2 block of dy") {
    Batch<Real> dx(in.pixels(), 2);
    ddpm::nn::upsample_nearest2x_backward<Real>(y, in, dx);
    CHECK((dx - 4 * x).cwiseAbs().maxCoeff() == 0);  // small integers: exact
  }
}

TEST_CASE("upsample_nearest2x_backward is the adjoint of upsample_nearest2x") {
  // <dy, up(x)> == <up^T(dy), x> for random x and dy; both sides are sums of the same 4 * 3 *
  // 5 * 7 * 3 products in different orders, equal to round-off (1e-12 relative in double).
  const ImageShape in{3, 5, 7, 3};
  const Batch<double> x = random_batch(in.pixels(), 3, 1);
  const Batch<double> dy = random_batch(4 * in.pixels(), 3, 2);
  Batch<double> y(4 * in.pixels(), 3);
  ddpm::nn::upsample_nearest2x<double>(x, in, y);
  Batch<double> dx(in.pixels(), 3);
  ddpm::nn::upsample_nearest2x_backward<double>(dy, in, dx);
  const double lhs = (dy.array() * y.array()).sum();
  const double rhs = (dx.array() * x.array()).sum();
  CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));

  SUBCASE("accumulate adds to dx, and dy may be a column block") {
    const Batch<double> base = random_batch(in.pixels(), 3, 3);
    Batch<double> wide_dy = random_batch(4 * in.pixels(), 5, 4);
    wide_dy.middleCols(1, 3) = dy;
    Batch<double> acc = base;
    ddpm::nn::upsample_nearest2x_backward<double>(wide_dy.middleCols(1, 3), in, acc,
                                                  /*accumulate=*/true);
    CHECK((acc - base - dx).cwiseAbs().maxCoeff() < 1e-14);
  }
}

TEST_CASE("upsample_nearest2x rejects mismatched shapes, naming the parameter") {
  const ImageShape in{2, 3, 4, 5};
  const Batch<double> x = random_batch(in.pixels(), 5, 1);
  Batch<double> y(4 * in.pixels(), 5);
  Batch<double> dx(in.pixels(), 5);
  CHECK_NOTHROW(ddpm::nn::upsample_nearest2x<double>(x, in, y));
  const Batch<double> wrong_x = random_batch(in.pixels(), 4, 1);
  DDPM_CHECK_INVALID("x", ddpm::nn::upsample_nearest2x<double>(wrong_x, in, y));
  Batch<double> wrong_y(4 * in.pixels() - 1, 5);
  DDPM_CHECK_INVALID("y", ddpm::nn::upsample_nearest2x<double>(x, in, wrong_y));
  DDPM_CHECK_INVALID("in.height",
                     ddpm::nn::upsample_nearest2x<double>(x, ImageShape{2, -3, -4, 5}, y));
  DDPM_CHECK_INVALID("dy", ddpm::nn::upsample_nearest2x_backward<double>(wrong_y, in, dx));
  Batch<double> wrong_dx(in.pixels(), 6);
  DDPM_CHECK_INVALID("dx", ddpm::nn::upsample_nearest2x_backward<double>(y, in, wrong_dx));
}

}  // namespace upsample_test
