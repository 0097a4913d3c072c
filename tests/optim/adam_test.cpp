// SPDX-License-Identifier: MIT
// Tests of Adam and AdamW: the first two updates against hand-computed values (PyTorch's
// arithmetic), flat vs block-wise stepping, checkpointable state, and hyper-parameter validation.
#include "ddpm/optim/adam.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"

namespace adam_test {

namespace {

using ddpm::optim::AdamOptions;

// p0 = [1, -2, 0.5]; g1 = [0.5, -0.1, 0]; g2 = [-0.25, 0.3, 0.2]; lr 0.1, betas (0.9, 0.999),
// eps 1e-8. Expected values from the scalar update rule evaluated in float64 (Python).
const std::vector<double> kStart{1.0, -2.0, 0.5};
const std::vector<double> kGrad1{0.5, -0.1, 0.0};
const std::vector<double> kGrad2{-0.25, 0.3, 0.2};

template <class Optimizer>
std::vector<std::vector<double>> two_steps(Optimizer& opt) {
  std::vector<double> p = kStart;
  std::vector<std::vector<double>> out;
  for (const std::vector<double>* g : {&kGrad1, &kGrad2}) {
    opt.step(std::span<double>(p), std::span<const double>(*g));
    out.push_back(p);
  }
  return out;
}

void check_close(const std::vector<double>& got, const std::vector<double>& expected) {
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-12));
  }
}

}  // namespace

TEST_CASE("Adam: first two updates match hand-computed values") {
  ddpm::optim::Adam<double> adam({.learning_rate = 0.1});
  const auto steps = two_steps(adam);
  // Step 1: m_hat / sqrt(v_hat) = sign(g), so p moves by lr (1 - 2e-8 of it because of eps).
  check_close(steps[0], {0.900000002, -1.900000009999999, 0.5});
  check_close(steps[1], {0.8733662987078463, -1.9494189911200654, 0.42558632290382775});
  CHECK(adam.step_count() == 2);
  check_close({adam.first_moment().begin(), adam.first_moment().end()}, {0.02, 0.021, 0.02});
  check_close({adam.second_moment().begin(), adam.second_moment().end()},
              {0.00031225, 9.999e-05, 4.0e-05});
}

TEST_CASE("Adam with weight_decay adds an L2 term to the gradient") {
  ddpm::optim::Adam<double> adam({.learning_rate = 0.1, .weight_decay = 0.1});
  const auto steps = two_steps(adam);
  check_close(steps[0], {0.9000000016666666, -1.9000000033333333, 0.400000019999996});
  check_close(steps[1], {0.8544413674617625, -1.8627221078108944, 0.31348939938819714});
}

TEST_CASE("AdamW decays the weights outside the moments") {
  ddpm::optim::AdamW<double> adamw({.learning_rate = 0.1, .weight_decay = 0.1});
  const auto steps = two_steps(adamw);
  // Step 1: p * (1 - lr wd) then the Adam step; the zero-gradient element only decays.
  check_close(steps[0], {0.890000002, -1.880000009999999, 0.495});
  check_close(steps[1], {0.8544662986878463, -1.9106189910200655, 0.41563632290382774});
  // The moments are those of plain Adam: the decay never enters them.
  check_close({adamw.first_moment().begin(), adamw.first_moment().end()}, {0.02, 0.021, 0.02});
}

TEST_CASE("AdamW with zero weight decay is Adam") {
  ddpm::optim::Adam<double> adam({.learning_rate = 0.1});
  ddpm::optim::AdamW<double> adamw({.learning_rate = 0.1});
  check_close(two_steps(adamw)[1], two_steps(adam)[1]);
}

TEST_CASE("Adam over separate ParameterBlocks equals Adam over one flat buffer") {
  // 10000 elements so the update runs in several parallel chunks.
  std::vector<float> flat_p(10000), flat_g(10000);
  for (std::size_t i = 0; i < flat_p.size(); ++i) {
    flat_p[i] = static_cast<float>(i % 17) * 0.1f - 0.8f;
    flat_g[i] = static_cast<float>(i % 13) * 0.05f - 0.3f;
  }
  std::vector<float> a_p(flat_p.begin(), flat_p.begin() + 6000),
      a_g(flat_g.begin(), flat_g.begin() + 6000);
  std::vector<float> b_p(flat_p.begin() + 6000, flat_p.end()),
      b_g(flat_g.begin() + 6000, flat_g.end());
  const std::vector<ddpm::ParameterBlock<float>> blocks{{"a", a_p, a_g}, {"b", b_p, b_g}};

  ddpm::optim::AdamW<float> flat({.learning_rate = 0.01, .weight_decay = 0.01});
  ddpm::optim::AdamW<float> split({.learning_rate = 0.01, .weight_decay = 0.01});
  for (int k = 0; k < 3; ++k) {
    flat.step(std::span<float>(flat_p), std::span<const float>(flat_g));
    split.step(blocks);
  }
  CHECK(std::equal(a_p.begin(), a_p.end(), flat_p.begin()));
  CHECK(std::equal(b_p.begin(), b_p.end(), flat_p.begin() + 6000));
  CHECK(a_p[0] != -0.8f);  // the parameters did move
  CHECK(split.step_count() == 3);
}

TEST_CASE("Adam state round-trips: a resumed optimizer continues exactly") {
  ddpm::optim::Adam<double> first({.learning_rate = 0.1});
  std::vector<double> p = kStart;
  first.step(std::span<double>(p), std::span<const double>(kGrad1));
  const std::vector<double> m(first.first_moment().begin(), first.first_moment().end());
  const std::vector<double> v(first.second_moment().begin(), first.second_moment().end());

  ddpm::optim::Adam<double> resumed({.learning_rate = 0.1});
  resumed.set_state(first.step_count(), m, v);
  std::vector<double> q = p;
  first.step(std::span<double>(p), std::span<const double>(kGrad2));
  resumed.step(std::span<double>(q), std::span<const double>(kGrad2));
  CHECK(p == q);
  CHECK(resumed.step_count() == 2);

  resumed.reset();
  CHECK(resumed.step_count() == 0);
  CHECK(resumed.first_moment().empty());
}

TEST_CASE("Adam rejects bad hyper-parameters and mismatched shapes, naming the parameter") {
  using Adam = ddpm::optim::Adam<double>;
  CHECK_THROWS_WITH_AS(Adam({.learning_rate = 0.0}),
                       doctest::Contains("invalid learning_rate = 0; allowed: a finite value > 0"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(Adam({.learning_rate = -1e-3}), doctest::Contains("invalid learning_rate"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(Adam({.beta1 = 1.0}),
                       doctest::Contains("invalid beta1 = 1; allowed: [0, 1)"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(Adam({.beta2 = -0.1}),
                       doctest::Contains("invalid beta2 = -0.10000000000000001; allowed: [0, 1)"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(Adam({.eps = 0.0}), doctest::Contains("invalid eps = 0"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::optim::AdamW<double>({.weight_decay = -0.01}),
                       doctest::Contains("invalid weight_decay"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(Adam({.learning_rate = std::numeric_limits<double>::infinity()}),
                       doctest::Contains("invalid learning_rate = inf"), ddpm::InvalidArgument);

  Adam adam;
  CHECK_THROWS_WITH_AS(adam.set_learning_rate(0.0), doctest::Contains("invalid learning_rate"),
                       ddpm::InvalidArgument);
  std::vector<double> p(3), g(2);
  CHECK_THROWS_WITH_AS(adam.step(std::span<double>(p), std::span<const double>(g)),
                       doctest::Contains("invalid grads.size() = 2; allowed: values.size() = 3"),
                       ddpm::InvalidArgument);
  g.resize(3);
  adam.step(std::span<double>(p), std::span<const double>(g));
  std::vector<double> p4(4), g4(4);
  CHECK_THROWS_WITH_AS(adam.step(std::span<double>(p4), std::span<const double>(g4)),
                       doctest::Contains("invalid parameter count = 4; allowed: 3"),
                       ddpm::InvalidArgument);
  const std::vector<ddpm::ParameterBlock<double>> bad{{"w", p4, g}};
  CHECK_THROWS_WITH_AS(adam.step(bad), doctest::Contains("invalid gradient size of block w = 3"),
                       ddpm::InvalidArgument);
  const std::vector<double> m(3), v(2);
  CHECK_THROWS_WITH_AS(adam.set_state(1, m, v), doctest::Contains("invalid second_moment.size()"),
                       ddpm::InvalidArgument);
}

}  // namespace adam_test
