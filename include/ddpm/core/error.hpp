// SPDX-License-Identifier: MIT
// Exceptions thrown by ddpm, with messages that name the parameter, the value and what is allowed.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace ddpm {

/// A caller passed a bad argument: the message names the parameter, its value and what is allowed.
class InvalidArgument : public std::invalid_argument {
 public:
  /// The message reads "ddpm: invalid <parameter> = <value>; allowed: <allowed>".
  InvalidArgument(std::string_view parameter, std::string_view value, std::string_view allowed)
      : std::invalid_argument(compose(parameter, value, allowed)), parameter_(parameter) {}

  /// The name of the offending parameter, e.g. "eta".
  [[nodiscard]] const std::string& parameter() const noexcept { return parameter_; }

 private:
  static std::string compose(std::string_view parameter, std::string_view value,
                             std::string_view allowed) {
    std::string message = "ddpm: invalid ";
    message.append(parameter).append(" = ").append(value).append("; allowed: ").append(allowed);
    return message;
  }
  std::string parameter_;
};

/// A file (checkpoint, data set) is corrupt, truncated or of the wrong kind.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Training produced a non-finite loss or gradient, or a sampler a non-finite network output.
class NonFiniteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

/// Renders any streamable value for an error message.
template <class T>
std::string to_text(const T& value) {
  std::ostringstream out;
  out.precision(17);
  out << value;
  return out.str();
}

/// Throws InvalidArgument(parameter, value, allowed) unless `ok`. `allowed` is a string, or a
/// callable returning one, so that hot paths build the message only when it is needed (checks
/// that run every step must not allocate).
template <class T, class Allowed>
void require(bool ok, std::string_view parameter, const T& value, Allowed&& allowed) {
  if (ok) [[likely]]
    return;
  if constexpr (std::is_invocable_v<Allowed>) {
    throw InvalidArgument(parameter, to_text(value), std::string(allowed()));
  } else {
    throw InvalidArgument(parameter, to_text(value), std::string_view(allowed));
  }
}

/// Throws InvalidArgument naming a shape mismatch "rows x cols" unless `ok`. `allowed` is a
/// string, or a callable returning one, as for require().
template <class Allowed>
void require_shape(bool ok, std::string_view parameter, long long rows, long long cols,
                   Allowed&& allowed) {
  if (ok) [[likely]]
    return;
  std::string value = to_text(rows) + "x" + to_text(cols) + " matrix";
  if constexpr (std::is_invocable_v<Allowed>) {
    throw InvalidArgument(parameter, value, std::string(allowed()));
  } else {
    throw InvalidArgument(parameter, value, std::string_view(allowed));
  }
}

}  // namespace detail
}  // namespace ddpm
