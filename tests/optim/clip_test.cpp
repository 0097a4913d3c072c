// SPDX-License-Identifier: MIT
// Tests of global-norm gradient clipping against hand-computed cases.
#include "ddpm/optim/clip.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"

namespace clip_test {

TEST_CASE("clip_grad_norm scales by max_norm / (norm + 1e-6) and returns the norm") {
  SUBCASE("flat buffer: [3, 4] has norm 5, clipped to 1") {
    std::vector<double> g{3.0, 4.0};
    CHECK(ddpm::optim::clip_grad_norm(std::span<double>(g), 1.0) == doctest::Approx(5.0));
    CHECK(g[0] == doctest::Approx(3.0 / (5.0 + 1e-6)).epsilon(1e-14));
    CHECK(g[1] == doctest::Approx(4.0 / (5.0 + 1e-6)).epsilon(1e-14));
  }
  SUBCASE("below the limit nothing changes") {
    std::vector<float> g{3.0f, 4.0f};
    CHECK(ddpm::optim::clip_grad_norm(std::span<float>(g), 10.0) == doctest::Approx(5.0));
    CHECK(g[0] == 3.0f);
    CHECK(g[1] == 4.0f);
  }
  SUBCASE("blocks share one global norm: [1, 2] and [2] -> 3, clipped to 1.5") {
    std::vector<double> v1(2), g1{1.0, 2.0}, v2(1), g2{2.0};
    std::vector<ddpm::ParameterBlock<double>> blocks{{"a", v1, g1}, {"b", v2, g2}};
    CHECK(ddpm::optim::global_grad_norm(blocks) == doctest::Approx(3.0));
    CHECK(ddpm::optim::clip_grad_norm(blocks, 1.5) == doctest::Approx(3.0));
    const double factor = 1.5 / (3.0 + 1e-6);
    CHECK(g1[0] == doctest::Approx(factor).epsilon(1e-14));
    CHECK(g1[1] == doctest::Approx(2.0 * factor).epsilon(1e-14));
    CHECK(g2[0] == doctest::Approx(2.0 * factor).epsilon(1e-14));
    CHECK(ddpm::optim::global_grad_norm(blocks) == doctest::Approx(1.5).epsilon(1e-6));
  }
  SUBCASE("a zero gradient stays zero; max_norm 0 zeroes any gradient") {
    std::vector<double> zero{0.0, 0.0};
    CHECK(ddpm::optim::clip_grad_norm(std::span<double>(zero), 1.0) == 0.0);
    CHECK(zero[0] == 0.0);
    std::vector<double> g{1.0, -1.0};
    ddpm::optim::clip_grad_norm(std::span<double>(g), 0.0);
    CHECK(g[1] == 0.0);
  }
  SUBCASE("a non-finite norm is returned and nothing is scaled") {
    std::vector<double> g{std::numeric_limits<double>::infinity(), 1.0};
    CHECK(std::isinf(ddpm::optim::clip_grad_norm(std::span<double>(g), 1.0)));
    CHECK(g[1] == 1.0);
  }
}

TEST_CASE("clip_grad_norm rejects a negative max_norm") {
  std::vector<double> g{1.0};
  CHECK_THROWS_WITH_AS(ddpm::optim::clip_grad_norm(std::span<double>(g), -1.0),
                       doctest::Contains("invalid max_norm = -1; allowed: >= 0"),
                       ddpm::InvalidArgument);
}

}  // namespace clip_test
