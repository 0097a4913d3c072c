// SPDX-License-Identifier: MIT
// Tests of the checkpoint format: exact round trip, and every kind of damage rejected with a
// FormatError (never a crash or a huge allocation).
#include "ddpm/train/checkpoint.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"

namespace checkpoint_test {

namespace {

using ddpm::train::Checkpoint;

Checkpoint sample_checkpoint() {
  Checkpoint c;
  c.set("architecture", "mlp in=2 width=8");
  c.set("step", "42");
  const std::vector<float> weights = {1.5f, -2.25f, 3.0e-8f, 0.0f};
  const std::vector<double> moments = {1.0 / 3.0, -1e300, 4.9e-324};
  const std::vector<std::int64_t> counts = {0, -7, INT64_MAX};
  c.put<float>("model.weight", weights);
  c.put<double>("adam.m", moments);
  c.put_integers("sampler.counts", counts);
  return c;
}

// Recomputes the CRC after an edit of the payload, to reach the checks behind the checksum.
std::string with_valid_crc(std::string bytes) {
  const std::string_view payload(bytes.data() + 20, bytes.size() - 24);
  const std::uint32_t crc = ddpm::train::detail::crc32(payload);
  for (int k = 0; k < 4; ++k)
    bytes[bytes.size() - 4 + static_cast<std::size_t>(k)] =
        static_cast<char>((crc >> (8 * k)) & 0xFF);
  return bytes;
}

}  // namespace

TEST_CASE("CRC-32 matches the standard check value") {
  CHECK(ddpm::train::detail::crc32("123456789") == 0xCBF43926u);
}

TEST_CASE("a checkpoint round-trips exactly through bytes and through a file") {
  const Checkpoint original = sample_checkpoint();
  const std::string bytes = original.serialize();
  SUBCASE("bytes") {
    const Checkpoint back = Checkpoint::parse(bytes, "memory");
    CHECK(back.metadata() == original.metadata());
    CHECK(back.get("architecture") == "mlp in=2 width=8");
    std::vector<float> weights(4);
    back.take<float>("model.weight", weights);
    CHECK(weights == std::vector<float>{1.5f, -2.25f, 3.0e-8f, 0.0f});
    std::vector<double> moments(3);
    back.take<double>("adam.m", moments);
    CHECK(moments == std::vector<double>{1.0 / 3.0, -1e300, 4.9e-324});
    CHECK(back.integers("sampler.counts") == std::vector<std::int64_t>{0, -7, INT64_MAX});
    CHECK(back.serialize() == bytes);
  }
  SUBCASE("file, written atomically") {
    const std::filesystem::path path =
        std::filesystem::temp_directory_path() / "ddpm_checkpoint_test.ckpt";
    original.save(path);
    CHECK_FALSE(std::filesystem::exists(path.string() + ".tmp"));
    CHECK(Checkpoint::load(path).serialize() == bytes);
    std::filesystem::remove(path);
  }
}

TEST_CASE("damaged checkpoints are rejected with FormatError") {
  const std::string bytes = sample_checkpoint().serialize();
  SUBCASE("truncated at every offset") {
    for (std::size_t length = 0; length < bytes.size(); ++length) {
      CAPTURE(length);
      CHECK_THROWS_AS(Checkpoint::parse(std::string_view(bytes).substr(0, length), "cut"),
                      ddpm::FormatError);
    }
  }
  SUBCASE("padded") {
    CHECK_THROWS_WITH_AS(Checkpoint::parse(bytes + "x", "padded"),
                         doctest::Contains("truncated or padded"), ddpm::FormatError);
  }
  SUBCASE("every single flipped byte") {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      std::string damaged = bytes;
      damaged[i] = static_cast<char>(damaged[i] ^ 0x5A);
      CAPTURE(i);
      CHECK_THROWS_AS(Checkpoint::parse(damaged, "flipped"), ddpm::FormatError);
    }
  }
  SUBCASE("wrong magic") {
    std::string damaged = bytes;
    damaged[0] = 'X';
    CHECK_THROWS_WITH_AS(Checkpoint::parse(damaged, "f.ckpt"),
                         doctest::Contains("not a ddpm checkpoint"), ddpm::FormatError);
    CHECK_THROWS_WITH_AS(Checkpoint::parse(damaged, "f.ckpt"), doctest::Contains("'f.ckpt'"),
                         ddpm::FormatError);
  }
  SUBCASE("wrong version") {
    std::string damaged = bytes;
    damaged[8] = 2;
    CHECK_THROWS_WITH_AS(Checkpoint::parse(damaged, "v2"),
                         doctest::Contains("version 2 is not supported"), ddpm::FormatError);
  }
  SUBCASE("checksum mismatch") {
    std::string damaged = bytes;
    damaged[30] = static_cast<char>(damaged[30] ^ 1);
    CHECK_THROWS_WITH_AS(Checkpoint::parse(damaged, "crc"), doctest::Contains("checksum mismatch"),
                         ddpm::FormatError);
  }
  SUBCASE("absurd sizes behind a valid checksum are refused before allocating") {
    // The first metadata key length (payload offset 4) claims 4 GiB.
    std::string damaged = bytes;
    for (int k = 0; k < 4; ++k) damaged[24 + static_cast<std::size_t>(k)] = static_cast<char>(0xFF);
    CHECK_THROWS_WITH_AS(Checkpoint::parse(with_valid_crc(damaged), "huge"),
                         doctest::Contains("truncated"), ddpm::FormatError);
    // A tensor dimension of 2^62 elements.
    Checkpoint c;
    const std::vector<double> one = {1.0};
    c.put<double>("t", one);
    std::string tensor_bytes = c.serialize();
    // payload: u32 0 metadata, u32 1 tensor, u32 1 name length, 't', u8 type, u8 rank, u64 dim.
    const std::size_t dim_offset = 20 + 4 + 4 + 4 + 1 + 1 + 1;
    for (int k = 0; k < 8; ++k)
      tensor_bytes[dim_offset + static_cast<std::size_t>(k)] = k == 7 ? 0x40 : 0;
    CHECK_THROWS_WITH_AS(Checkpoint::parse(with_valid_crc(tensor_bytes), "huge"),
                         doctest::Contains("more elements than the file holds"), ddpm::FormatError);
  }
  SUBCASE("missing file, missing entries, wrong sizes") {
    CHECK_THROWS_WITH_AS(Checkpoint::load("/nonexistent/x.ckpt"),
                         doctest::Contains("cannot be opened"), ddpm::FormatError);
    const Checkpoint c = Checkpoint::parse(bytes, "ok");
    CHECK_THROWS_AS((void)c.get("nope"), ddpm::FormatError);
    std::vector<float> wrong(5);
    CHECK_THROWS_WITH_AS(c.take<float>("model.weight", wrong), doctest::Contains("model expects 5"),
                         ddpm::FormatError);
    CHECK_THROWS_AS((void)c.integers("adam.m"), ddpm::FormatError);
  }
}

TEST_CASE("crc32_update continues a CRC, and a parsed checkpoint knows its source") {
  CHECK(ddpm::train::detail::crc32_update(ddpm::train::detail::crc32("1234"), "56789") ==
        0xCBF43926u);
  const Checkpoint back = Checkpoint::parse(sample_checkpoint().serialize(), "runs/model.ckpt");
  CHECK(back.source() == "runs/model.ckpt");
  CHECK_THROWS_WITH_AS((void)back.get("nothing"),
                       "ddpm: checkpoint 'runs/model.ckpt' has no metadata 'nothing'",
                       ddpm::FormatError);
  CHECK_THROWS_WITH_AS((void)back.tensor("nothing"),
                       "ddpm: checkpoint 'runs/model.ckpt' has no tensor 'nothing'",
                       ddpm::FormatError);
}

}  // namespace checkpoint_test
