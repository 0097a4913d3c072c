// SPDX-License-Identifier: MIT
// Tests of nn::GroupNorm: forward against a naive per-(image, group) reference, the normalized
// statistics themselves, float accuracy under a large offset, backward against central finite
// differences, accumulation, thread-count independence and bad inputs.
#include "ddpm/nn/group_norm.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "support.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace group_norm_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::Activation;
using ddpm::nn::GroupNorm;
using ddpm::nn::ImageShape;
using ddpm::nn::ParameterStore;

using ddpm::test::flat;
using ddpm::test::random_batch;

double apply(Activation act, double z) {
  switch (act) {
    case Activation::relu:
      return z > 0 ? z : 0.0;
    case Activation::silu:
      return z / (1.0 + std::exp(-z));
    case Activation::gelu:
      return 0.5 * z * (1.0 + std::tanh(0.7978845608028654 * (z + 0.044715 * z * z * z)));
    case Activation::identity:
      break;
  }
  return z;
}

// torch.nn.GroupNorm followed by f, in plain loops over (image, group).
Batch<double> reference(const Batch<double>& x, const ImageShape& s, Index groups,
                        const Batch<double>& gamma, const Batch<double>& beta, Activation act,
                        double eps) {
  Batch<double> y(x.rows(), x.cols());
  const Index per_group = s.channels / groups;
  for (Index n = 0; n < s.batch; ++n) {
    for (Index g = 0; g < groups; ++g) {
      double sum = 0.0;
      for (Index p = 0; p < s.plane(); ++p) {
        for (Index c = g * per_group; c < (g + 1) * per_group; ++c) sum += x(n * s.plane() + p, c);
      }
      const double count = static_cast<double>(s.plane() * per_group);
      const double mean = sum / count;
      double squares = 0.0;
      for (Index p = 0; p < s.plane(); ++p) {
        for (Index c = g * per_group; c < (g + 1) * per_group; ++c) {
          const double d = x(n * s.plane() + p, c) - mean;
          squares += d * d;
        }
      }
      const double rstd = 1.0 / std::sqrt(squares / count + eps);
      for (Index p = 0; p < s.plane(); ++p) {
        for (Index c = g * per_group; c < (g + 1) * per_group; ++c) {
          const Index r = n * s.plane() + p;
          y(r, c) = apply(act, (x(r, c) - mean) * rstd * gamma(0, c) + beta(0, c));
        }
      }
    }
  }
  return y;
}

// Relative error allowed between analytic and central-difference gradients (h = 1e-5 in double:
// truncation ~1e-10 and round-off ~1e-10 against a 1e-3 floor give ~1e-7; a wrong gradient is
// O(1)).
constexpr double kGradTol = 1e-5;
constexpr double kStep = 1e-5;

const ImageShape kShape{2, 3, 4, 8};

// A bound layer with random gamma and beta, so that the affine part is exercised.
template <class Real>
struct Fixture {
  Fixture(Index groups, Activation act, Index channels = 8) {
    norm = GroupNorm<Real>(store, "gn", groups, channels, act);
    store.allocate();
    norm.bind(store);
    norm.initialize();
    norm.weight() = (1.0 + 0.5 * random_batch(1, channels, 90).array()).matrix().cast<Real>();
    norm.bias() = (0.5 * random_batch(1, channels, 91)).cast<Real>();
  }
  ParameterStore<Real> store;
  GroupNorm<Real> norm;
};

}  // namespace

TEST_CASE("GroupNorm forward matches a naive per-(image, group) reference") {
  for (const Index groups : {2, 4}) {
    for (const Activation act : {Activation::identity, Activation::silu, Activation::gelu}) {
      CAPTURE(groups);
      CAPTURE(std::string(ddpm::to_string(act)));
      Fixture<double> f(groups, act);
      const Batch<double> x =
          random_batch(kShape.pixels(), 8, 1) * 2.0 + Batch<double>::Ones(24, 8);
      Batch<double> y(24, 8);
      f.norm.forward(x, kShape, y);
      const Batch<double> expected =
          reference(x, kShape, groups, f.norm.weight(), f.norm.bias(), act, f.norm.eps());
      CHECK((y - expected).cwiseAbs().maxCoeff() < 1e-12);

      SUBCASE("inference in place (y is x) gives the same values") {
        Batch<double> in_place = x;
        f.norm.forward(in_place, kShape, in_place, false);
        CHECK((in_place - y).cwiseAbs().maxCoeff() == 0.0);
      }
      SUBCASE("x and y may be column blocks of wider matrices") {
        Batch<double> wide_x = random_batch(24, 11, 2);
        wide_x.middleCols(2, 8) = x;
        Batch<double> wide_y = Batch<double>::Zero(24, 13);
        f.norm.forward(wide_x.middleCols(2, 8), kShape, wide_y.middleCols(3, 8));
        // Not bitwise: the vectorized exp() splits rows at other places at other alignments.
        CHECK((wide_y.middleCols(3, 8) - y).cwiseAbs().maxCoeff() < 1e-14);
        CHECK(wide_y.leftCols(3).cwiseAbs().maxCoeff() == 0.0);
      }
    }
  }
}

TEST_CASE("GroupNorm normalizes each (image, group) to mean 0 and variance var / (var + eps)") {
  ParameterStore<double> store;
  GroupNorm<double> norm(store, "gn", 4, 8);
  store.allocate();
  norm.bind(store);
  norm.initialize();  // gamma = 1, beta = 0: y is the normalized x
  // Each group gets its own offset and spread, so a statistic taken over the wrong set shows.
  Batch<double> x = random_batch(kShape.pixels(), 8, 3);
  for (Index c = 0; c < 8; ++c)
    x.col(c) = x.col(c) * (1.0 + c) + Batch<double>::Constant(24, 1, 5.0 * c);
  Batch<double> y(24, 8);
  norm.forward(x, kShape, y);
  for (Index n = 0; n < 2; ++n) {
    for (Index g = 0; g < 4; ++g) {
      const Batch<double> xs = x.block(n * 12, 2 * g, 12, 2);
      const Batch<double> ys = y.block(n * 12, 2 * g, 12, 2);
      const double var_x = (xs.array() - xs.mean()).square().mean();
      CHECK(std::abs(ys.mean()) < 1e-12);
      CHECK((ys.array() - ys.mean()).square().mean() ==
            doctest::Approx(var_x / (var_x + 1e-5)).epsilon(1e-12));
    }
  }
}

TEST_CASE("float GroupNorm keeps its precision under a large common offset") {
  // mean 1e3, sd 1: E[x^2] - mean^2 in float would lose every digit of the variance.
  const ImageShape s{2, 8, 8, 16};
  const Batch<float> xf = (random_batch(s.pixels(), 16, 4).array() + 1e3).matrix().cast<float>();
  const Batch<double> xd = xf.cast<double>();  // the same inputs, exactly
  const Batch<double> dy = random_batch(s.pixels(), 16, 5);
  Fixture<float> f(4, Activation::silu, 16);
  Fixture<double> d(4, Activation::silu, 16);
  Batch<float> yf(s.pixels(), 16);
  Batch<double> yd(s.pixels(), 16);
  f.norm.forward(xf, s, yf);
  d.norm.forward(xd, s, yd);
  // Float rounds the group mean (1e3) to ~3e-5 and the output to ~1e-7: 1e-3 is loose.
  CHECK((yf.cast<double>() - yd).cwiseAbs().maxCoeff() < 1e-3 * yd.cwiseAbs().maxCoeff());
  Batch<float> dxf(s.pixels(), 16);
  Batch<double> dxd(s.pixels(), 16);
  f.norm.backward(xf, s, dy.cast<float>(), dxf);
  d.norm.backward(xd, s, dy, dxd);
  CHECK((dxf.cast<double>() - dxd).cwiseAbs().maxCoeff() < 1e-3 * dxd.cwiseAbs().maxCoeff());
  CHECK((f.norm.weight_grad().cast<double>() - d.norm.weight_grad()).cwiseAbs().maxCoeff() <
        1e-3 * d.norm.weight_grad().cwiseAbs().maxCoeff());
}

TEST_CASE("GroupNorm backward matches central finite differences") {
  for (const Index groups : {2, 4}) {
    for (const Activation act : {Activation::identity, Activation::silu, Activation::gelu}) {
      CAPTURE(groups);
      CAPTURE(std::string(ddpm::to_string(act)));
      Fixture<double> f(groups, act);
      Batch<double> x = random_batch(kShape.pixels(), 8, 6) + Batch<double>::Constant(24, 8, 0.5);
      const Batch<double> weights = random_batch(24, 8, 7);  // loss = sum(weights .* y)
      Batch<double> y(24, 8);
      auto loss = [&] {
        f.norm.forward(x, kShape, y, false);
        return (y.array() * weights.array()).sum();
      };
      f.store.zero_grad();
      f.norm.forward(x, kShape, y);
      Batch<double> dx(24, 8);
      f.norm.backward(x, kShape, weights, dx);

      std::vector<double> numeric(static_cast<std::size_t>(f.store.size()));
      ddpm::nn::numeric_gradient(loss, f.store.values(), std::span<double>(numeric), kStep);
      CHECK(ddpm::nn::max_gradient_error<double>(f.store.grads(), numeric) < kGradTol);

      Batch<double> numeric_dx(24, 8);
      ddpm::nn::numeric_gradient(loss, flat(x), flat(numeric_dx), kStep);
      CHECK(ddpm::nn::max_gradient_error<double>(flat(dx), flat(numeric_dx)) < kGradTol);
    }
  }
}

TEST_CASE("GroupNorm backward accumulates parameter gradients and can add into dx") {
  Fixture<double> f(2, Activation::silu);
  const Batch<double> x = random_batch(24, 8, 8);
  const Batch<double> dy = random_batch(24, 8, 9);
  Batch<double> y(24, 8);
  f.norm.forward(x, kShape, y);
  Batch<double> dx(24, 8);
  f.norm.backward(x, kShape, dy, dx);
  const std::vector<double> once(f.store.grads().begin(), f.store.grads().end());

  SUBCASE("a second backward doubles the parameter gradients") {
    f.norm.backward(x, kShape, dy, dx);
    for (std::size_t i = 0; i < once.size(); ++i) {
      CHECK(f.store.grads()[i] == doctest::Approx(2 * once[i]).epsilon(1e-12));
    }
  }
  SUBCASE("accumulate_dx adds to what dx holds") {
    const Batch<double> base = random_batch(24, 8, 10);
    Batch<double> dx2 = base;
    f.norm.backward(x, kShape, dy, dx2, /*accumulate_dx=*/true);
    CHECK((dx2 - base - dx).cwiseAbs().maxCoeff() < 1e-12);
  }
  SUBCASE("dx may be the matrix dy, also for the identity") {
    Batch<double> in_place = dy;
    f.norm.backward(x, kShape, in_place, in_place);
    CHECK((in_place - dx).cwiseAbs().maxCoeff() < 1e-12);

    Fixture<double> plain(2, Activation::identity);
    plain.norm.forward(x, kShape, y);
    Batch<double> expected(24, 8);
    plain.norm.backward(x, kShape, dy, expected);
    in_place = dy;
    plain.norm.backward(x, kShape, in_place, in_place);
    CHECK((in_place - expected).cwiseAbs().maxCoeff() < 1e-12);
  }
  SUBCASE("an empty batch is a no-op") {
    const ImageShape empty{0, 3, 4, 8};
    Batch<double> none(0, 8);
    Batch<double> none_y(0, 8);
    f.norm.forward(none, empty, none_y);
    f.norm.backward(none, empty, none_y, none_y);
    for (std::size_t i = 0; i < once.size(); ++i) CHECK(f.store.grads()[i] == once[i]);
  }
}

#ifdef _OPENMP
TEST_CASE("GroupNorm results do not depend on the thread count") {
  const ImageShape s{6, 8, 8, 32};
  const Batch<float> x = random_batch<float>(s.pixels(), 32, 11);
  const Batch<float> dy = random_batch<float>(s.pixels(), 32, 12);
  auto run = [&](int threads, Batch<float>& y, Batch<float>& dx, std::vector<float>& grads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    Fixture<float> f(8, Activation::silu, 32);
    y.resize(s.pixels(), 32);
    dx.resize(s.pixels(), 32);
    f.norm.forward(x, s, y);
    f.norm.backward(x, s, dy, dx);
    grads.assign(f.store.grads().begin(), f.store.grads().end());
    omp_set_num_threads(saved);
  };
  Batch<float> y1, y2, dx1, dx2;
  std::vector<float> g1, g2;
  run(1, y1, dx1, g1);
  run(2, y2, dx2, g2);
  CHECK(y1 == y2);
  CHECK(dx1 == dx2);
  CHECK(g1 == g2);
}
#endif

TEST_CASE("GroupNorm rejects bad arguments, naming them") {
  ParameterStore<double> store;
  DDPM_CHECK_INVALID("gn.groups", GroupNorm<double>(store, "gn", 3, 8));
  DDPM_CHECK_INVALID("gn.groups", GroupNorm<double>(store, "gn", 0, 8));
  DDPM_CHECK_INVALID("gn.channels", GroupNorm<double>(store, "gn", 1, 0));
  DDPM_CHECK_INVALID("gn.eps", GroupNorm<double>(store, "gn", 2, 8, Activation::identity, -1.0));
  CHECK(store.slots().empty());  // a rejected layer registers nothing

  GroupNorm<double> norm(store, "gn", 2, 8, Activation::silu);
  store.allocate();
  norm.bind(store);
  norm.initialize();
  Batch<double> x = random_batch(24, 8, 13);
  Batch<double> y(24, 8);
  const Batch<double> wrong_cols = random_batch(24, 6, 13);
  const Batch<double> wrong_rows = random_batch(20, 8, 13);
  DDPM_CHECK_INVALID("x", norm.forward(wrong_cols, kShape, y));
  DDPM_CHECK_INVALID("x", norm.forward(wrong_rows, kShape, y));
  DDPM_CHECK_INVALID("s", norm.forward(x, ImageShape{2, 3, 4, 6}, y));
  DDPM_CHECK_INVALID("s", norm.forward(x, ImageShape{-2, -3, 4, 8}, y));
  Batch<double> bad_y(24, 7);
  DDPM_CHECK_INVALID("y", norm.forward(x, kShape, bad_y));
  DDPM_CHECK_INVALID("y", norm.forward(x, kShape, x));  // keep_for_backward needs x intact

  Batch<double> dx(24, 8);
  norm.forward(x, kShape, y, false);
  CHECK_THROWS_AS(norm.backward(x, kShape, y, dx), std::logic_error);
  norm.forward(x, kShape, y);
  const ImageShape other{2, 4, 3, 8};
  CHECK_THROWS_AS(norm.backward(x, other, y, dx), std::logic_error);
  DDPM_CHECK_INVALID("dy", norm.backward(x, kShape, bad_y, dx));
  DDPM_CHECK_INVALID("dx", norm.backward(x, kShape, y, bad_y));
}

}  // namespace group_norm_test
