// SPDX-License-Identifier: MIT
// A small JSON object writer for metrics files: keys in insertion order, strings escaped, numbers
// with 6 significant digits, nested objects on one line.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ddpm::io {

/// A JSON object built key by key: `JsonObject().add("n", 4).add("unit", "nats/dim").text()`.
class JsonObject {
 public:
  /// Adds a string, escaped and quoted; the key must be new.
  JsonObject& add(std::string_view key, std::string_view value) { return raw(key, quoted(value)); }
  /// \overload
  JsonObject& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  /// Adds true or false.
  JsonObject& add(std::string_view key, bool value) { return raw(key, value ? "true" : "false"); }
  /// Adds an integer, exactly.
  template <std::integral Int>
  JsonObject& add(std::string_view key, Int value) {
    return raw(key, std::to_string(value));
  }
  /// A number with 6 significant digits; NaN and infinities (not JSON) become null.
  JsonObject& add(std::string_view key, double value) {
    if (!std::isfinite(value)) return raw(key, "null");
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.6g", value);
    return raw(key, buffer);
  }
  /// Adds a list of numbers, each with 6 significant digits.
  JsonObject& add(std::string_view key, const std::vector<double>& values) {
    std::string text = "[";
    for (std::size_t i = 0; i < values.size(); ++i) {
      JsonObject number;
      number.add("", values[i]);
      text += (i > 0 ? ", " : "") + number.entries_[0].second;
    }
    return raw(key, text + "]");
  }
  /// Adds a nested object (on one line).
  JsonObject& add(std::string_view key, const JsonObject& nested) {
    return raw(key, nested.text(false));
  }
  /// The object's text: one key per line (`pretty`) or on one line.
  [[nodiscard]] std::string text(bool pretty = true) const {
    std::string out = "{";
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      out += i > 0 ? "," : "";
      out += pretty ? "\n  " : (i > 0 ? " " : "");
      out += quoted(entries_[i].first) + ": " + entries_[i].second;
    }
    return out + (pretty ? "\n}\n" : "}");
  }

  /// `text` as a JSON string literal (quotes, backslashes and control characters escaped).
  static std::string quoted(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
      if (c == '"' || c == '\\') {
        out.push_back('\\');
        out.push_back(c);
      } else if (static_cast<unsigned char>(c) < 32) {
        char buffer[8];
        std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(c));
        out.append(buffer);
      } else {
        out.push_back(c);
      }
    }
    return out + "\"";
  }

 private:
  JsonObject& raw(std::string_view key, std::string value) {
    entries_.emplace_back(std::string(key), std::move(value));
    return *this;
  }
  std::vector<std::pair<std::string, std::string>> entries_;
};

}  // namespace ddpm::io
