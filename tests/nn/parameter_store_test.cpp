// SPDX-License-Identifier: MIT
// Tests of nn::ParameterStore (one buffer, named blocks, copies with their own buffers) and of
// nn::Workspace (grows only) and the finite-difference helper.
#include "ddpm/nn/parameter_store.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "ddpm/nn/workspace.hpp"

namespace parameter_store_test {

TEST_CASE("ParameterStore lays blocks back to back in one buffer") {
  ddpm::nn::ParameterStore<float> store;
  const auto a = store.add("a.weight", 2, 3);
  const auto b = store.add("a.bias", 1, 3);
  CHECK_THROWS_WITH_AS(store.add("a.bias", 1, 1),
                       doctest::Contains("invalid parameter name = a.bias"), ddpm::InvalidArgument);
  store.allocate();
  CHECK(store.size() == 9);
  CHECK(b.offset == 6);
  CHECK(store.value_data(a) == store.values().data());
  CHECK(store.value_data(b) == store.values().data() + 6);
  CHECK(store.grad_data(b) == store.grads().data() + 6);
  REQUIRE(store.blocks().size() == 2);
  CHECK(store.blocks()[1].name == "a.bias");
  CHECK(store.blocks()[1].value.data() == store.value_data(b));
  CHECK(store.blocks()[1].grad.size() == 3);
  CHECK_THROWS_AS(store.add("late", 1, 1), std::logic_error);

  store.grads()[4] = 2.0f;
  store.zero_grad();
  CHECK(store.grads()[4] == 0.0f);

  SUBCASE("a copy has its own buffers and blocks pointing into them") {
    store.values()[7] = 5.0f;
    ddpm::nn::ParameterStore<float> copy = store;
    CHECK(copy.values().data() != store.values().data());
    CHECK(copy.blocks()[1].value.data() == copy.values().data() + 6);
    CHECK(copy.blocks()[1].value[1] == 5.0f);
    copy.values()[7] = 1.0f;
    CHECK(store.values()[7] == 5.0f);
    ddpm::nn::ParameterStore<float> moved = std::move(copy);
    CHECK(moved.blocks()[1].value.data() == moved.values().data() + 6);
  }
}

TEST_CASE("Workspace grows only, so a smaller batch reuses the storage") {
  ddpm::nn::Workspace<double> w;
  Eigen::Map<ddpm::Batch<double>> big = w.resize(100, 8);
  const double* storage = big.data();
  CHECK(w.capacity() == 800);
  Eigen::Map<ddpm::Batch<double>> small = w.resize(10, 8);
  CHECK(small.data() == storage);
  CHECK(small.rows() == 10);
  CHECK(w.capacity() == 800);
  w.resize(100, 8);
  CHECK(w.view().data() == storage);
}

TEST_CASE("numeric_gradient and max_gradient_error") {
  std::vector<double> x{1.0, -2.0, 0.5};
  std::vector<double> numeric(3);
  auto loss = [&] { return x[0] * x[0] + std::sin(x[1]) + 3.0 * x[2]; };
  ddpm::nn::numeric_gradient(loss, std::span<double>(x), std::span<double>(numeric), 1e-5);
  const std::vector<double> exact{2.0, std::cos(-2.0), 3.0};
  CHECK(ddpm::nn::max_gradient_error<double>(exact, numeric) < 1e-9);
  CHECK(x[0] == 1.0);  // restored
  const std::vector<double> wrong{2.0, std::cos(-2.0), 3.1};
  CHECK(ddpm::nn::max_gradient_error<double>(wrong, numeric) > 0.03);
}

}  // namespace parameter_store_test
