// SPDX-License-Identifier: MIT
// Tests of the weight EMA: hand-computed averages with and without the decay warm-up, swapping the
// average in and out, checkpoint state, and validation.
#include "ddpm/optim/ema.hpp"

#include <doctest/doctest.h>

#include <span>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"

namespace ema_test {

TEST_CASE("EMA without warm-up: shadow = d shadow + (1 - d) params") {
  std::vector<double> p{1.0, 2.0};
  ddpm::optim::Ema<double> ema(std::span<const double>(p), {.decay = 0.9});
  CHECK(ema.shadow()[0] == 1.0);  // starts as a copy
  p = {3.0, 4.0};
  ema.update(std::span<const double>(p));
  CHECK(ema.shadow()[0] == doctest::Approx(0.9 * 1.0 + 0.1 * 3.0).epsilon(1e-15));
  CHECK(ema.shadow()[1] == doctest::Approx(0.9 * 2.0 + 0.1 * 4.0).epsilon(1e-15));
  p = {0.0, 0.0};
  ema.update(std::span<const double>(p));
  CHECK(ema.shadow()[0] == doctest::Approx(0.9 * 1.2).epsilon(1e-15));
  CHECK(ema.num_updates() == 2);
}

TEST_CASE("EMA warm-up uses min(decay, (1 + n) / (10 + n)), n = updates already applied") {
  std::vector<double> p{1.0};
  ddpm::optim::Ema<double> ema(std::span<const double>(p), {.decay = 0.5, .warmup = true});
  CHECK(ema.current_decay() == doctest::Approx(0.1));  // n = 0: 1/10
  p = {3.0};
  ema.update(std::span<const double>(p));
  CHECK(ema.shadow()[0] == doctest::Approx(0.1 * 1.0 + 0.9 * 3.0));  // 2.8
  CHECK(ema.current_decay() == doctest::Approx(2.0 / 11.0));         // n = 1
  p = {5.0};
  ema.update(std::span<const double>(p));
  CHECK(ema.shadow()[0] == doctest::Approx(2.0 / 11.0 * 2.8 + 9.0 / 11.0 * 5.0));
  // From n = 8 on, (1 + n) / (10 + n) = 9/18 reaches the 0.5 cap.
  ema.set_state(8, ema.shadow());
  CHECK(ema.current_decay() == doctest::Approx(0.5));
  ema.set_state(100, ema.shadow());
  CHECK(ema.current_decay() == 0.5);
}

TEST_CASE("EMA swap puts the average into the model and back") {
  std::vector<float> params{1.0f, 2.0f, 3.0f};
  ddpm::optim::Ema<float> ema(std::span<const float>(params), {.decay = 0.5});
  std::vector<float> trained{3.0f, 4.0f, 5.0f};
  ema.update(std::span<const float>(trained));  // shadow = [2, 3, 4]
  {
    auto averaged = ema.swapped_in(std::span<float>(trained));
    CHECK(trained == std::vector<float>{2.0f, 3.0f, 4.0f});
  }
  CHECK(trained == std::vector<float>{3.0f, 4.0f, 5.0f});
  CHECK(ema.shadow()[0] == 2.0f);

  SUBCASE("swap over blocks and copy_to") {
    std::vector<float> a{3.0f, 4.0f}, b{5.0f}, ga(2), gb(1);
    const std::vector<ddpm::ParameterBlock<float>> blocks{{"a", a, ga}, {"b", b, gb}};
    ema.swap(blocks);
    CHECK(a == std::vector<float>{2.0f, 3.0f});
    CHECK(b[0] == 4.0f);
    ema.swap(blocks);
    CHECK(b[0] == 5.0f);
    std::vector<float> out(3);
    ema.copy_to(std::span<float>(out));
    CHECK(out == std::vector<float>{2.0f, 3.0f, 4.0f});
    ema.update(blocks);  // blocks hold [3, 4, 5]
    CHECK(ema.shadow()[2] == 4.5f);
  }
}

TEST_CASE("EMA rejects a decay outside [0, 1] and mismatched sizes") {
  std::vector<double> p{1.0, 2.0};
  CHECK_THROWS_WITH_AS(ddpm::optim::Ema<double>(std::span<const double>(p), {.decay = 1.5}),
                       doctest::Contains("invalid decay = 1.5; allowed: [0, 1]"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::optim::Ema<double>(std::span<const double>(p), {.decay = -0.1}),
                       doctest::Contains("invalid decay"), ddpm::InvalidArgument);
  ddpm::optim::Ema<double> ema(std::span<const double>(p), {.decay = 1.0});
  std::vector<double> three{1.0, 2.0, 3.0};
  CHECK_THROWS_WITH_AS(ema.update(std::span<const double>(three)),
                       doctest::Contains("invalid parameter count = 3; allowed: 2"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ema.set_state(-1, p), doctest::Contains("invalid num_updates = -1"),
                       ddpm::InvalidArgument);
  ema.update(std::span<const double>(p));
  CHECK(ema.shadow()[1] == 2.0);  // decay 1 freezes the average
}

}  // namespace ema_test
