// SPDX-License-Identifier: MIT
// Tests of nn::ConcatSquashLinear: the forward pass against a scalar implementation of Luo & Hu's
// formula, the backward pass (parameters, input, context) against finite differences, and its
// input checks.
#include "ddpm/nn/concat_squash.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <span>
#include <stdexcept>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "ddpm/nn/model_core.hpp"
#include "support.hpp"

namespace concat_squash_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::ConcatSquashLinear;
using ddpm::test::flat;
using ddpm::test::random_batch;

// Central differences in double with h = 1e-5: the losses are sums of ~100-1000 terms of size
// ~1, so rounding contributes ~1e-16 * 100 / h = 1e-9 absolute and truncation ~h^2 = 1e-10,
// i.e. < 1e-6 relative at the 1e-3 floor of max_gradient_error (h = 1e-6 measured 3e-6 here:
// rounding dominates). No ReLU kink or max-pool tie lies within h of the random inputs.
constexpr double kStep = 1e-5;
constexpr double kGradTol = 1e-6;

struct OneLayer {
  ConcatSquashLinear<double> layer;
  void bind(ddpm::nn::ParameterStore<double>& store) { layer.bind(store); }
};

/// A layer with its own store (BoundLayers), initialized from seed 3.
ddpm::nn::BoundLayers<double, OneLayer> make_layer(Index in, Index out, Index context, bool leaky) {
  ddpm::nn::BoundLayers<double, OneLayer> net([&](ddpm::nn::ParameterStore<double>& store) {
    return OneLayer{ConcatSquashLinear<double>(store, "csl", in, out, context, leaky)};
  });
  net.layers().layer.initialize(ddpm::CounterRng(3), 0);
  return net;
}

}  // namespace

TEST_CASE("ConcatSquashLinear forward is (x W + b) * sigmoid(c W_g + b_g) + c W_h, then f") {
  for (const bool leaky : {false, true}) {
    CAPTURE(leaky);
    auto net = make_layer(4, 70, 5, leaky);
    ConcatSquashLinear<double>& layer = net.layers().layer;
    const Index groups = 3, n = 4;
    const Batch<double> x = random_batch(groups * n, 4, 1);
    const Batch<double> c = random_batch(groups, 5, 2);
    const Batch<double> skip = random_batch(groups * n, 70, 3);
    Batch<double> y(groups * n, 70), y_skip(groups * n, 70);
    layer.set_context(c);
    layer.forward(x, n, y);
    layer.forward(x, n, y_skip, skip, false);
    // The flat buffer in registration order: weight, bias, gate.weight, gate.bias, hyper_bias.
    const std::span<const double> p = std::as_const(net.store()).values();
    const double* w = p.data();
    const double* b = w + 4 * 70;
    const double* wg = b + 70;
    const double* bg = wg + 5 * 70;
    const double* wh = bg + 70;
    CHECK(wh + 5 * 70 == p.data() + p.size());
    double worst = 0;
    for (Index r = 0; r < groups * n; ++r) {
      const Index s = r / n;
      for (Index o = 0; o < 70; ++o) {
        double a = b[o], g = bg[o], h = 0;
        for (Index i = 0; i < 4; ++i) a += x(r, i) * w[i * 70 + o];
        for (Index i = 0; i < 5; ++i) {
          g += c(s, i) * wg[i * 70 + o];
          h += c(s, i) * wh[i * 70 + o];
        }
        double u = a / (1.0 + std::exp(-g)) + h;
        if (leaky && u < 0) u *= 0.01;
        worst = std::max(worst, std::abs(y(r, o) - u));
        worst = std::max(worst, std::abs(y_skip(r, o) - (u + skip(r, o))));
      }
    }
    CHECK(worst < 1e-13);
  }
}

TEST_CASE("ConcatSquashLinear backward matches finite differences: parameters, x and context") {
  // 70 outputs: two column blocks of the per-group reduction; 3 groups of 4 rows.
  for (const bool leaky : {false, true}) {
    CAPTURE(leaky);
    auto net = make_layer(4, 70, 5, leaky);
    ConcatSquashLinear<double>& layer = net.layers().layer;
    const Index groups = 3, n = 4;
    Batch<double> x = random_batch(groups * n, 4, 11);
    Batch<double> c = random_batch(groups, 5, 12);
    const Batch<double> weights = random_batch(groups * n, 70, 13);
    Batch<double> y(groups * n, 70);
    auto loss = [&] {
      layer.set_context(c);
      layer.forward(x, n, y, false);
      return (y.array() * weights.array()).sum();
    };
    net.store().zero_grad();
    layer.set_context(c);
    layer.forward(x, n, y);
    Batch<double> dx(groups * n, 4), dc = Batch<double>::Constant(groups, 5, 0.5);
    layer.backward(x, c, weights, dc, dx);
    dc.array() -= 0.5;  // backward adds to d_context
    const std::vector<double> analytic(net.store().grads().begin(), net.store().grads().end());

    std::vector<double> numeric(analytic.size());
    ddpm::nn::numeric_gradient(loss, net.store().values(), std::span<double>(numeric), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(analytic, numeric) < kGradTol);
    Batch<double> numeric_x(groups * n, 4), numeric_c(groups, 5);
    ddpm::nn::numeric_gradient(loss, flat(x), flat(numeric_x), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(flat(dx), flat(numeric_x)) < kGradTol);
    ddpm::nn::numeric_gradient(loss, flat(c), flat(numeric_c), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(flat(dc), flat(numeric_c)) < kGradTol);

    // Without dx: the same parameter gradients.
    net.store().zero_grad();
    layer.set_context(c);
    layer.forward(x, n, y);
    Batch<double> dc2 = Batch<double>::Zero(groups, 5);
    layer.backward(x, c, weights, dc2);
    CHECK(ddpm::nn::max_gradient_error<double>(net.store().grads(), analytic) < 1e-14);
    CHECK((dc2 - dc).cwiseAbs().maxCoeff() < 1e-14);
  }
}

TEST_CASE("ConcatSquashLinear rejects bad shapes and a backward without its forward") {
  auto net = make_layer(3, 8, 4, true);
  ConcatSquashLinear<double>& layer = net.layers().layer;
  const Batch<double> x = random_batch(6, 3, 1);
  const Batch<double> c = random_batch(2, 4, 2);
  Batch<double> y(6, 8), dc = Batch<double>::Zero(2, 4);
  DDPM_CHECK_INVALID("context", layer.set_context(random_batch(2, 5, 3)));
  layer.set_context(c);
  DDPM_CHECK_INVALID("x.rows()", layer.forward(x, 2, y));  // 3 groups of 2 for 2 context rows
  DDPM_CHECK_INVALID("x", layer.forward(random_batch(6, 4, 4), 3, y));
  DDPM_CHECK_INVALID("group_rows", layer.forward(x, 0, y));
  Batch<double> wrong_y(6, 7);
  DDPM_CHECK_INVALID("y", layer.forward(x, 3, wrong_y));
  CHECK_THROWS_AS(layer.backward(x, c, y, dc), std::logic_error);  // nothing kept yet
  layer.forward(x, 3, y);
  Batch<double> wrong_dc(3, 4);
  DDPM_CHECK_INVALID("d_context", layer.backward(x, c, y, wrong_dc));
  layer.backward(x, c, y, dc);
  CHECK_THROWS_WITH_AS(layer.backward(x, c, y, dc),
                       doctest::Contains("allows one backward per forward"), std::logic_error);
  DDPM_CHECK_INVALID("csl.negative_slope",
                     ConcatSquashLinear<double>(net.store(), "csl", 3, 8, 4, true, 1.5));
}

}  // namespace concat_squash_test
