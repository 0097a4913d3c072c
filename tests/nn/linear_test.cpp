// SPDX-License-Identifier: MIT
// Tests of nn::Linear: forward values, and backward (parameters and inputs) against central finite
// differences for every fused activation, with and without the residual skip.
#include "ddpm/nn/linear.hpp"

#include <doctest/doctest.h>

#include <initializer_list>
#include <span>
#include <string>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "support.hpp"

namespace linear_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::Activation;

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

// Relative error allowed between analytic and central-difference gradients (h = 1e-5 in double:
// truncation ~1e-10 and round-off ~1e-10 against a 1e-3 floor give ~1e-7; a wrong gradient is
// O(1)).
constexpr double kGradTol = 1e-5;
constexpr double kStep = 1e-5;

}  // namespace

TEST_CASE("Linear forward computes f(x W + b) with W stored in x out") {
  for (const Activation act :
       {Activation::identity, Activation::relu, Activation::silu, Activation::gelu}) {
    CAPTURE(std::string(ddpm::to_string(act)));
    ddpm::nn::ParameterStore<double> store;
    ddpm::nn::Linear<double> fc(store, "fc", 3, 4, act);
    store.allocate();
    fc.bind(store);
    fc.initialize(ddpm::CounterRng(3), 0);
    const Batch<double> x = random_batch(5, 3, 1);
    Batch<double> y(5, 4);
    fc.forward(x, y);
    for (Index r = 0; r < 5; ++r) {
      for (Index c = 0; c < 4; ++c) {
        double z = fc.bias()(c);
        for (Index k = 0; k < 3; ++k) z += x(r, k) * fc.weight()(k, c);
        CHECK(y(r, c) == doctest::Approx(apply(act, z)).epsilon(1e-12));
      }
    }
    SUBCASE("without keep_for_backward the in-place pass gives the same values") {
      Batch<double> y2(5, 4);
      fc.forward(x, y2, false);
      CHECK((y2 - y).cwiseAbs().maxCoeff() == 0.0);
    }
  }
}

TEST_CASE("Linear initialization is uniform(-1/sqrt(in), 1/sqrt(in)) and reproducible") {
  ddpm::nn::ParameterStore<double> store;
  ddpm::nn::Linear<double> fc(store, "fc", 100, 50);
  store.allocate();
  fc.bind(store);
  fc.initialize(ddpm::CounterRng(11), 4);
  const Batch<double> w1 = fc.weight();
  CHECK(w1.cwiseAbs().maxCoeff() <= 0.1);
  CHECK(w1.cwiseAbs().maxCoeff() > 0.099);  // 5000 draws reach the bound's last 1%
  CHECK(fc.bias().cwiseAbs().maxCoeff() <= 0.1);
  fc.initialize(ddpm::CounterRng(11), 4);
  CHECK((Batch<double>(fc.weight()) - w1).cwiseAbs().maxCoeff() == 0.0);
  fc.initialize(ddpm::CounterRng(11), 5);
  CHECK((Batch<double>(fc.weight()) - w1).cwiseAbs().maxCoeff() > 0.0);
  fc.initialize(ddpm::CounterRng(11), 4, /*zero=*/true);
  CHECK(fc.weight().cwiseAbs().maxCoeff() == 0.0);
  CHECK(fc.bias().cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("Linear backward matches central finite differences") {
  for (const Activation act :
       {Activation::identity, Activation::relu, Activation::silu, Activation::gelu}) {
    for (const bool with_skip : {false, true}) {
      CAPTURE(std::string(ddpm::to_string(act)));
      CAPTURE(with_skip);
      ddpm::nn::ParameterStore<double> store;
      ddpm::nn::Linear<double> fc(store, "fc", 5, 4, act);
      store.allocate();
      fc.bind(store);
      fc.initialize(ddpm::CounterRng(5), 1);
      Batch<double> x = random_batch(7, 5, 2);
      Batch<double> skip = random_batch(7, 4, 3);
      const Batch<double> weights = random_batch(7, 4, 4);  // loss = sum(weights .* y)
      Batch<double> y(7, 4);
      auto loss = [&] {
        if (with_skip) {
          fc.forward(x, y, skip, false);
        } else {
          fc.forward(x, y, false);
        }
        return (y.array() * weights.array()).sum();
      };

      store.zero_grad();
      if (with_skip) {
        fc.forward(x, y, skip);
      } else {
        fc.forward(x, y);
      }
      Batch<double> dx(7, 5);
      fc.backward(x, weights, dx);

      std::vector<double> numeric(static_cast<std::size_t>(store.size()));
      ddpm::nn::numeric_gradient(loss, store.values(), std::span<double>(numeric), kStep);
      CHECK(ddpm::nn::max_gradient_error<double>(store.grads(), numeric) < kGradTol);

      Batch<double> numeric_dx(7, 5);
      ddpm::nn::numeric_gradient(loss, flat(x), flat(numeric_dx), kStep);
      CHECK(ddpm::nn::max_gradient_error<double>(flat(dx), flat(numeric_dx)) < kGradTol);
    }
  }
}

TEST_CASE("Linear backward accumulates parameter gradients and can add into dx") {
  ddpm::nn::ParameterStore<double> store;
  ddpm::nn::Linear<double> fc(store, "fc", 3, 6, Activation::silu);
  store.allocate();
  fc.bind(store);
  fc.initialize(ddpm::CounterRng(8), 0);
  const Batch<double> x = random_batch(130, 3, 9);  // > one 64-row chunk of the bias sums
  const Batch<double> dy = random_batch(130, 6, 10);
  Batch<double> y(130, 6);
  fc.forward(x, y);
  Batch<double> dx(130, 3);
  fc.backward(x, dy, dx);
  const std::vector<double> once(store.grads().begin(), store.grads().end());

  SUBCASE("a second backward doubles the parameter gradients") {
    fc.backward(x, dy);
    for (std::size_t i = 0; i < once.size(); ++i) {
      CHECK(store.grads()[i] == doctest::Approx(2 * once[i]).epsilon(1e-12));
    }
  }
  SUBCASE("accumulate_dx adds dz W^T to what dx holds") {
    const Batch<double> base = random_batch(130, 3, 12);
    Batch<double> dx2 = base;
    fc.backward(x, dy, dx2, /*accumulate_dx=*/true);
    CHECK((dx2 - base - dx).cwiseAbs().maxCoeff() < 1e-12);
  }
  SUBCASE("dx may be the matrix dy (square layer), also for the identity") {
    for (const Activation act : {Activation::silu, Activation::identity}) {
      ddpm::nn::ParameterStore<double> s2;
      ddpm::nn::Linear<double> sq(s2, "sq", 4, 4, act);
      s2.allocate();
      sq.bind(s2);
      sq.initialize(ddpm::CounterRng(1), 0);
      const Batch<double> xs = random_batch(9, 4, 13);
      const Batch<double> g = random_batch(9, 4, 14);
      Batch<double> ys(9, 4);
      sq.forward(xs, ys);
      Batch<double> expected(9, 4);
      sq.backward(xs, g, expected);
      Batch<double> in_place = g;
      sq.backward(xs, in_place, in_place);
      CHECK((in_place - expected).cwiseAbs().maxCoeff() < 1e-12);
    }
  }
}

TEST_CASE("Linear rejects mismatched shapes and a backward without kept activations") {
  ddpm::nn::ParameterStore<double> store;
  ddpm::nn::Linear<double> fc(store, "fc", 3, 2, Activation::silu);
  store.allocate();
  fc.bind(store);
  Batch<double> x = random_batch(4, 3, 1);
  Batch<double> bad_x = random_batch(4, 5, 1);
  Batch<double> y(4, 2);
  CHECK_THROWS_WITH_AS(fc.forward(bad_x, y), doctest::Contains("invalid x = 4x5 matrix"),
                       ddpm::InvalidArgument);
  Batch<double> bad_y(3, 2);
  CHECK_THROWS_WITH_AS(fc.forward(x, bad_y), doctest::Contains("invalid y = 3x2"),
                       ddpm::InvalidArgument);
  fc.forward(x, y, false);
  CHECK_THROWS_AS(fc.backward(x, y), std::logic_error);
  CHECK_THROWS_WITH_AS((ddpm::nn::Linear<double>(store, "late", 3, 2)),
                       doctest::Contains("after allocate"), std::logic_error);
}

}  // namespace linear_test
