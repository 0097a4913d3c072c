// SPDX-License-Identifier: MIT
// Tests of the stand-alone activation layers (SiLU, GELU, ReLU): values at hand-computed points,
// the backward pass against central finite differences, and the activation name table.
#include "ddpm/nn/activation.hpp"

#include <doctest/doctest.h>

#include <span>
#include <string>
#include <vector>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "support.hpp"

namespace activation_test {

namespace {

using ddpm::Batch;
using ddpm::Index;

using ddpm::test::flat;
using ddpm::test::random_batch;

// Central differences with h = 1e-5 in double are accurate to ~1e-10 here; see linear_test.cpp.
constexpr double kGradTol = 1e-5;

template <class Layer>
void check_layer_gradient(const Layer& layer) {
  // 150 columns cover more than two 64-element blocks of the backward kernels.
  Batch<double> x = random_batch(3, 150, 21);
  const Batch<double> weights = random_batch(3, 150, 22);
  Batch<double> y(3, 150);
  auto loss = [&] {
    layer.forward(x, y);
    return (y.array() * weights.array()).sum();
  };
  Batch<double> dx(3, 150);
  layer.backward(x, weights, dx);
  Batch<double> numeric(3, 150);
  ddpm::nn::numeric_gradient(loss, flat(x), flat(numeric), 1e-5);
  CHECK(ddpm::nn::max_gradient_error<double>(flat(dx), flat(numeric)) < kGradTol);

  // dx may be dy itself.
  Batch<double> in_place = weights;
  layer.backward(x, in_place, in_place);
  CHECK((in_place - dx).cwiseAbs().maxCoeff() < 1e-15);
}

}  // namespace

TEST_CASE_TEMPLATE("activation values at hand-computed points", Real, float, double) {
  Batch<Real> x(1, 4);
  x << Real(1), Real(-2), Real(-0.5), Real(0);
  Batch<Real> y(1, 4);
  // float tolerance: Eigen's vectorized exp/tanh for float are accurate to a few ulp.
  const double eps = sizeof(Real) == 4 ? 1e-5 : 1e-13;

  SUBCASE("SiLU: z / (1 + e^-z)") {
    ddpm::nn::SiLU<Real>().forward(x, y);
    CHECK(double(y(0, 0)) == doctest::Approx(0.7310585786300049).epsilon(eps));
    CHECK(double(y(0, 1)) == doctest::Approx(-0.2384058440442351).epsilon(eps));
    CHECK(y(0, 3) == Real(0));
  }
  SUBCASE("GELU, tanh form: 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))") {
    ddpm::nn::GELU<Real>().forward(x, y);
    CHECK(double(y(0, 0)) == doctest::Approx(0.8411919906082768).epsilon(eps));
    CHECK(double(y(0, 2)) == doctest::Approx(-0.15428599017485606).epsilon(eps));
    CHECK(y(0, 3) == Real(0));
  }
  SUBCASE("ReLU: max(z, 0)") {
    ddpm::nn::ReLU<Real>().forward(x, y);
    CHECK(y(0, 0) == Real(1));
    CHECK(y(0, 1) == Real(0));
    CHECK(y(0, 2) == Real(0));
  }
  SUBCASE("in place (y is x)") {
    Batch<Real> z = x;
    ddpm::nn::SiLU<Real>().forward(z, z);
    CHECK(double(z(0, 0)) == doctest::Approx(0.7310585786300049).epsilon(eps));
  }
}

TEST_CASE("SiLU backward matches central finite differences") {
  check_layer_gradient(ddpm::nn::SiLU<double>());
}

TEST_CASE("GELU backward matches central finite differences") {
  check_layer_gradient(ddpm::nn::GELU<double>());
}

TEST_CASE("ReLU backward matches central finite differences") {
  check_layer_gradient(ddpm::nn::ReLU<double>());
}

TEST_CASE("activation layers reject a shape mismatch") {
  const Batch<double> x = random_batch(2, 3, 1);
  Batch<double> y(2, 4);
  CHECK_THROWS_WITH_AS(ddpm::nn::SiLU<double>().forward(x, y),
                       doctest::Contains("invalid y = 2x4 matrix"), ddpm::InvalidArgument);
}

TEST_CASE("Activation names come from its EnumTable and parse back") {
  using ddpm::nn::Activation;
  for (const Activation act :
       {Activation::identity, Activation::relu, Activation::silu, Activation::gelu}) {
    CHECK(ddpm::parse_enum<Activation>(ddpm::to_string(act)) == act);
  }
  CHECK(ddpm::to_string(Activation::silu) == "silu");
  CHECK(ddpm::enum_names<Activation>() ==
        std::vector<std::string>{"identity", "relu", "silu", "gelu"});
  CHECK_THROWS_WITH_AS(ddpm::parse_enum<Activation>("swish"),
                       "ddpm: invalid activation = swish; allowed: identity, relu, silu or gelu",
                       ddpm::InvalidArgument);
}

}  // namespace activation_test
