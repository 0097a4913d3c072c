// SPDX-License-Identifier: MIT
// Tests of the JSON object writer: key order, escaping, numbers (6 significant digits, non-finite
// as null), lists and nested objects.
#include "ddpm/io/json.hpp"

#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <vector>

namespace json_test {

TEST_CASE("JsonObject writes keys in order, escaped strings, numbers and nested objects") {
  ddpm::io::JsonObject json;
  json.add("name", "a \"quoted\"\\path\n")
      .add("n", 80)
      .add("ok", true)
      .add("mmd2", 1.0 / 3.0)
      .add("bad", std::numeric_limits<double>::quiet_NaN())
      .add("mean", std::vector<double>{100.0, -50.0})
      .add("floor", ddpm::io::JsonObject().add("n", 40).add("unit", "nats/dim"));
  CHECK(json.text() ==
        "{\n  \"name\": \"a \\\"quoted\\\"\\\\path\\u000a\",\n  \"n\": 80,\n  \"ok\": true,\n"
        "  \"mmd2\": 0.333333,\n  \"bad\": null,\n  \"mean\": [100, -50],\n"
        "  \"floor\": {\"n\": 40, \"unit\": \"nats/dim\"}\n}\n");
  CHECK(ddpm::io::JsonObject().text(false) == "{}");
}

}  // namespace json_test
