// SPDX-License-Identifier: MIT
// One name table per option enum: to_string, parsing with a message that lists the choices, and
// the choice list a command line shows all come from it, so no name is typed twice.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"

namespace ddpm {

/// One entry of an enum's name table: a value and its name on command lines and in files.
template <class E>
struct EnumName {
  E value;                ///< the enumerator
  std::string_view name;  ///< its name (lower case, words joined by '-')
};

/// Specialize for an option enum E with
///   `static constexpr std::string_view parameter`: what the option is called in error messages;
///   `static constexpr std::array<EnumName<E>, N> names`: every value once, canonical names first;
///   optionally `static constexpr std::array<EnumName<E>, M> aliases`: extra names parse accepts.
template <class E>
struct EnumTable;

/// An enum with a name table.
template <class E>
concept NamedEnum = requires {
  EnumTable<E>::parameter;
  EnumTable<E>::names;
};

/// The canonical name of `value`, e.g. "fixed-small".
template <NamedEnum E>
constexpr std::string_view to_string(E value) noexcept {
  for (const EnumName<E>& entry : EnumTable<E>::names) {
    if (entry.value == value) return entry.name;
  }
  return "?";
}

/// Every canonical name, in table order (for a command line's choice list).
template <NamedEnum E>
std::vector<std::string> enum_names() {
  std::vector<std::string> names;
  for (const EnumName<E>& entry : EnumTable<E>::names) names.emplace_back(entry.name);
  return names;
}

/// The canonical names as prose: "eps, x0 or v".
template <NamedEnum E>
std::string enum_choices() {
  std::string text;
  const auto& names = EnumTable<E>::names;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) text += i + 1 == names.size() ? " or " : ", ";
    text += names[i].name;
  }
  return text;
}

/// The value named `text` (a canonical name or an alias); throws InvalidArgument naming the
/// option, the text and the choices.
template <NamedEnum E>
E parse_enum(std::string_view text) {
  for (const EnumName<E>& entry : EnumTable<E>::names) {
    if (entry.name == text) return entry.value;
  }
  if constexpr (requires { EnumTable<E>::aliases; }) {
    for (const EnumName<E>& entry : EnumTable<E>::aliases) {
      if (entry.name == text) return entry.value;
    }
  }
  throw InvalidArgument(EnumTable<E>::parameter, text, enum_choices<E>());
}

}  // namespace ddpm
