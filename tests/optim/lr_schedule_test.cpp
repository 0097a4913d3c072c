// SPDX-License-Identifier: MIT
// Tests of the learning-rate schedules (warm-up, constant, cosine and linear decay to a floor) at
// hand-computed steps, and of their validation.
#include "ddpm/optim/lr_schedule.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "ddpm/core/error.hpp"

namespace lr_schedule_test {

using ddpm::optim::LrDecay;
using ddpm::optim::LrSchedule;

TEST_CASE("warm-up then constant") {
  const LrSchedule s({.base_lr = 1e-3, .warmup_steps = 10});
  CHECK(s(0) == doctest::Approx(1e-4));  // (0 + 1) / 10
  CHECK(s(4) == doctest::Approx(5e-4));
  CHECK(s(9) == doctest::Approx(1e-3));
  CHECK(s(10) == 1e-3);
  CHECK(s(1000000) == 1e-3);
  const LrSchedule no_warmup({.base_lr = 2e-4});
  CHECK(no_warmup(0) == 2e-4);
}

TEST_CASE("warm-up then cosine decay to a floor") {
  // Decay over steps 10..110 (100 steps) from 1e-3 to 1e-5.
  const LrSchedule s({.base_lr = 1e-3,
                      .warmup_steps = 10,
                      .decay = LrDecay::cosine,
                      .total_steps = 110,
                      .final_lr = 1e-5});
  CHECK(s(9) == doctest::Approx(1e-3));
  CHECK(s(10) == doctest::Approx(1e-3));
  CHECK(s(35) == doctest::Approx(0.000855017856687341).epsilon(1e-12));  // p = 0.25
  CHECK(s(60) == doctest::Approx(5.05e-4).epsilon(1e-12));               // p = 0.5
  CHECK(s(110) == doctest::Approx(1e-5).epsilon(1e-12));
  CHECK(s(5000) == doctest::Approx(1e-5).epsilon(1e-12));
}

TEST_CASE("warm-up then linear decay to a floor") {
  const LrSchedule s({.base_lr = 1e-3,
                      .warmup_steps = 10,
                      .decay = LrDecay::linear,
                      .total_steps = 110,
                      .final_lr = 1e-5});
  CHECK(s(35) == doctest::Approx(7.525e-4).epsilon(1e-12));
  CHECK(s(60) == doctest::Approx(5.05e-4).epsilon(1e-12));
  CHECK(s(109) == doctest::Approx(1e-3 - 0.99 * 9.9e-4).epsilon(1e-12));
  CHECK(s(200) == doctest::Approx(1e-5).epsilon(1e-12));
}

TEST_CASE("LrSchedule rejects bad options, naming the parameter") {
  CHECK_THROWS_WITH_AS(LrSchedule({.base_lr = 0.0}), doctest::Contains("invalid base_lr = 0"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(LrSchedule({.base_lr = 1e-3, .warmup_steps = -1}),
                       doctest::Contains("invalid warmup_steps = -1"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(
      LrSchedule(
          {.base_lr = 1e-3, .warmup_steps = 10, .decay = LrDecay::cosine, .total_steps = 10}),
      doctest::Contains("invalid total_steps = 10; allowed: > warmup_steps = 10"),
      ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(
      LrSchedule({.base_lr = 1e-3, .decay = LrDecay::linear, .total_steps = 10, .final_lr = 2e-3}),
      doctest::Contains("invalid final_lr = 0.002"), ddpm::InvalidArgument);
  const LrSchedule s({.base_lr = 1e-3});
  CHECK_THROWS_WITH_AS(static_cast<void>(s(-1)), doctest::Contains("invalid step = -1"),
                       ddpm::InvalidArgument);
}

TEST_CASE("LrDecay names come from one table") {
  for (const LrDecay decay : {LrDecay::constant, LrDecay::cosine, LrDecay::linear}) {
    CHECK(ddpm::parse_enum<LrDecay>(ddpm::to_string(decay)) == decay);
  }
  CHECK(ddpm::enum_names<LrDecay>() == std::vector<std::string>{"constant", "cosine", "linear"});
  CHECK_THROWS_WITH_AS(ddpm::parse_enum<LrDecay>("step"),
                       "ddpm: invalid decay = step; allowed: constant, cosine or linear",
                       ddpm::InvalidArgument);
}

}  // namespace lr_schedule_test
