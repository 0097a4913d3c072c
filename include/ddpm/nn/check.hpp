// SPDX-License-Identifier: MIT
// Argument checks for hot paths: the error text is built only when the check fails, so a passing
// check never allocates.
#pragma once

#include <string>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::nn::detail {

/// Throws InvalidArgument(parameter, value, allowed()) unless `ok`; `allowed` returns the text.
template <class T, class Allowed>
void check(bool ok, std::string_view parameter, const T& value, Allowed&& allowed) {
  if (!ok) throw InvalidArgument(parameter, ddpm::detail::to_text(value), allowed());
}

/// Throws InvalidArgument naming a "rows x cols" shape unless `ok`; `allowed` returns the text.
template <class Allowed>
void check_shape(bool ok, std::string_view parameter, Index rows, Index cols, Allowed&& allowed) {
  if (!ok) {
    throw InvalidArgument(
        parameter, ddpm::detail::to_text(rows) + "x" + ddpm::detail::to_text(cols) + " matrix",
        allowed());
  }
}

}  // namespace ddpm::nn::detail
