// SPDX-License-Identifier: MIT
// The checkpoint file format: named tensors and text metadata in a versioned, checksummed binary
// file, written atomically and read with every length checked, so corrupt files throw, never crash.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/io/file.hpp"

namespace ddpm::train {

/// Layout (all integers little-endian):
///   "DDPMCKPT" | u32 version | u64 payload bytes | payload | u32 CRC-32 of the payload
/// payload: u32 metadata count, then per entry u32 key bytes, key, u32 value bytes, value;
///          u32 tensor count, then per tensor u32 name bytes, name, u8 dtype (1 f32, 2 f64, 3 i64),
///          u8 rank (<= 8), u64 dims[rank], the elements.
inline constexpr std::array<char, 8> kCheckpointMagic = {'D', 'D', 'P', 'M', 'C', 'K', 'P', 'T'};
/// The format version this code writes and reads.
inline constexpr std::uint32_t kCheckpointVersion = 1;
/// Files above this size are refused before anything is allocated.
inline constexpr std::uintmax_t kMaxCheckpointBytes = std::uintmax_t{16} << 30;

/// One tensor of a checkpoint: a shape and its elements, stored as double or int64 in memory.
struct Tensor {
  /// The element type on disk (its code in the file).
  enum class Type : std::uint8_t {
    f32 = 1,  ///< 32-bit floats
    f64 = 2,  ///< 64-bit floats
    i64 = 3   ///< 64-bit signed integers
  };
  Type type = Type::f64;              ///< f32 and f64 load into `real`, i64 into `integer`
  std::vector<std::uint64_t> shape;   ///< the dimensions, outermost first (rank <= 8)
  std::vector<double> real;           ///< elements of f32 / f64 tensors
  std::vector<std::int64_t> integer;  ///< elements of i64 tensors

  /// The number of elements: the product of the shape.
  [[nodiscard]] std::uint64_t size() const {
    std::uint64_t n = 1;
    for (const std::uint64_t d : shape) n *= d;
    return n;
  }
};

/// A checkpoint in memory: text metadata and named tensors, both kept sorted by name.
class Checkpoint {
 public:
  /// Sets metadata `key` to `value` (replacing an earlier value).
  void set(const std::string& key, std::string value) { metadata_[key] = std::move(value); }
  /// True when metadata `key` is present.
  [[nodiscard]] bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  /// The metadata value of `key`; throws FormatError if the file had none.
  [[nodiscard]] const std::string& get(const std::string& key) const {
    const auto it = metadata_.find(key);
    if (it == metadata_.end()) {
      throw FormatError("ddpm: checkpoint '" + source_ + "' has no metadata '" + key + "'");
    }
    return it->second;
  }

  /// Stores floating-point values (float or double) as a rank-1 tensor of that precision.
  template <class Real>
  void put(const std::string& name, std::span<const Real> values,
           Tensor::Type type = Tensor::Type::f64) {
    Tensor tensor;
    tensor.type = std::is_same_v<Real, float> ? Tensor::Type::f32 : type;
    tensor.shape = {values.size()};
    tensor.real.assign(values.begin(), values.end());
    tensors_[name] = std::move(tensor);
  }
  /// Stores integers as a rank-1 i64 tensor.
  void put_integers(const std::string& name, std::span<const std::int64_t> values) {
    Tensor tensor;
    tensor.type = Tensor::Type::i64;
    tensor.shape = {values.size()};
    tensor.integer.assign(values.begin(), values.end());
    tensors_[name] = std::move(tensor);
  }

  /// True when tensor `name` is present.
  [[nodiscard]] bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  /// Tensor `name`; throws FormatError (naming the file) if there is none.
  [[nodiscard]] const Tensor& tensor(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      throw FormatError("ddpm: checkpoint '" + source_ + "' has no tensor '" + name + "'");
    }
    return it->second;
  }
  /// Copies tensor `name` into `out`, which must have exactly its number of elements.
  template <class Real>
  void take(const std::string& name, std::span<Real> out) const {
    const Tensor& t = tensor(name);
    if (t.type == Tensor::Type::i64 || t.real.size() != out.size()) {
      throw FormatError("ddpm: checkpoint tensor '" + name + "' has " + std::to_string(t.size()) +
                        " elements of the wrong kind or number; the model expects " +
                        std::to_string(out.size()) + " real values");
    }
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Real>(t.real[i]);
  }
  /// The elements of i64 tensor `name`; throws FormatError if it is missing or not i64.
  [[nodiscard]] const std::vector<std::int64_t>& integers(const std::string& name) const {
    const Tensor& t = tensor(name);
    if (t.type != Tensor::Type::i64) {
      throw FormatError("ddpm: checkpoint tensor '" + name + "' is not an integer tensor");
    }
    return t.integer;
  }

  /// All metadata, sorted by key.
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Where the checkpoint was parsed from (the file name), for error messages.
  [[nodiscard]] const std::string& source() const noexcept { return source_; }
  /// All tensors, sorted by name.
  [[nodiscard]] const std::map<std::string, Tensor>& tensors() const { return tensors_; }

  /// The file's bytes.
  [[nodiscard]] std::string serialize() const;
  /// Parses bytes; throws FormatError naming `source` and what is wrong.
  static Checkpoint parse(std::string_view bytes, const std::string& source);

  /// Writes atomically (temporary file, flush, rename).
  void save(const std::filesystem::path& path) const {
    io::write_file_atomically(path, serialize());
  }
  /// Reads and parses a file (size-capped); throws FormatError naming the file.
  static Checkpoint load(const std::filesystem::path& path) {
    return parse(io::read_file(path, kMaxCheckpointBytes, "checkpoint"), path.string());
  }

 private:
  std::map<std::string, std::string> metadata_;
  std::map<std::string, Tensor> tensors_;
  std::string source_ = "(in memory)";
};

namespace detail {

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table built at compile time.
inline constexpr std::array<std::uint32_t, 256> kCrcTable = [] {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}();

/// Continues a CRC-32: crc32(a + b) == crc32_update(crc32(a), b).
inline std::uint32_t crc32_update(std::uint32_t crc, std::string_view bytes) {
  std::uint32_t c = crc ^ 0xFFFFFFFFu;
  for (const char byte : bytes) {
    c = kCrcTable[(c ^ static_cast<std::uint8_t>(byte)) & 0xFFu] ^ (c >> 8);
  }
  return c ^ 0xFFFFFFFFu;
}

inline std::uint32_t crc32(std::string_view bytes) { return crc32_update(0, bytes); }

template <class T>
void put_le(std::string& out, T value) {
  static_assert(std::is_trivially_copyable_v<T>);
  std::array<char, sizeof(T)> raw;
  std::memcpy(raw.data(), &value, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(raw.begin(), raw.end());
  out.append(raw.data(), raw.size());
}

/// Shortest text that reads back as exactly `v`.
inline std::string exact_number(double v) {
  char buffer[64];
  return {buffer, std::to_chars(buffer, buffer + sizeof buffer, v).ptr};
}

inline void put_string(std::string& out, std::string_view s) {
  put_le<std::uint32_t>(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

/// A bounds-checked little-endian reader over the payload.
class Reader {
 public:
  Reader(std::string_view bytes, const std::string& source, std::size_t base)
      : bytes_(bytes), source_(source), base_(base) {}

  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    std::array<char, sizeof(T)> raw;
    std::memcpy(raw.data(), bytes_.data() + pos_, sizeof(T));
    if constexpr (std::endian::native == std::endian::big) std::reverse(raw.begin(), raw.end());
    pos_ += sizeof(T);
    T value;
    std::memcpy(&value, raw.data(), sizeof(T));
    return value;
  }
  std::string get_string(const char* what) {
    const auto length = get<std::uint32_t>(what);
    need(length, what);
    std::string s(bytes_.substr(pos_, length));
    pos_ += length;
    return s;
  }
  void need(std::uint64_t count, const char* what) const {
    if (count > bytes_.size() - pos_) {
      fail(std::string("truncated: ") + what + " needs " + std::to_string(count) +
           " bytes but only " + std::to_string(bytes_.size() - pos_) + " remain");
    }
  }
  [[nodiscard]] bool at_end() const { return pos_ == bytes_.size(); }
  [[noreturn]] void fail(const std::string& why) const {
    throw FormatError("ddpm: checkpoint '" + source_ + "' is corrupt at byte " +
                      std::to_string(base_ + pos_) + ": " + why);
  }

 private:
  std::string_view bytes_;
  const std::string& source_;
  std::size_t base_;
  std::size_t pos_ = 0;
};

}  // namespace detail

inline std::string Checkpoint::serialize() const {
  std::string payload;
  detail::put_le<std::uint32_t>(payload, static_cast<std::uint32_t>(metadata_.size()));
  for (const auto& [key, value] : metadata_) {
    detail::put_string(payload, key);
    detail::put_string(payload, value);
  }
  detail::put_le<std::uint32_t>(payload, static_cast<std::uint32_t>(tensors_.size()));
  for (const auto& [name, t] : tensors_) {
    detail::put_string(payload, name);
    detail::put_le<std::uint8_t>(payload, static_cast<std::uint8_t>(t.type));
    detail::put_le<std::uint8_t>(payload, static_cast<std::uint8_t>(t.shape.size()));
    for (const std::uint64_t d : t.shape) detail::put_le<std::uint64_t>(payload, d);
    switch (t.type) {
      case Tensor::Type::f32:
        for (const double v : t.real) detail::put_le<float>(payload, static_cast<float>(v));
        break;
      case Tensor::Type::f64:
        for (const double v : t.real) detail::put_le<double>(payload, v);
        break;
      case Tensor::Type::i64:
        for (const std::int64_t v : t.integer) detail::put_le<std::int64_t>(payload, v);
        break;
    }
  }
  std::string file(kCheckpointMagic.data(), kCheckpointMagic.size());
  detail::put_le<std::uint32_t>(file, kCheckpointVersion);
  detail::put_le<std::uint64_t>(file, payload.size());
  file += payload;
  detail::put_le<std::uint32_t>(file, detail::crc32(payload));
  return file;
}

inline Checkpoint Checkpoint::parse(std::string_view bytes, const std::string& source) {
  constexpr std::size_t header = 8 + 4 + 8, trailer = 4;
  detail::Reader head(bytes, source, 0);
  head.need(header, "the header");
  if (bytes.substr(0, 8) != std::string_view(kCheckpointMagic.data(), 8)) {
    head.fail("not a ddpm checkpoint (the file does not start with \"DDPMCKPT\")");
  }
  (void)head.get<std::uint64_t>("the magic");
  const auto version = head.get<std::uint32_t>("the version");
  if (version != kCheckpointVersion) {
    head.fail("version " + std::to_string(version) +
              " is not supported (this build reads version " + std::to_string(kCheckpointVersion) +
              ")");
  }
  const auto payload_size = head.get<std::uint64_t>("the payload size");
  if (bytes.size() < header + trailer || payload_size != bytes.size() - header - trailer) {
    head.fail("the header announces " + std::to_string(payload_size) +
              " payload bytes but the file has " + std::to_string(bytes.size()) +
              " bytes in all (truncated or padded)");
  }
  const std::string_view payload = bytes.substr(header, payload_size);
  detail::Reader tail(bytes.substr(header + payload_size), source, header + payload_size);
  const auto stored_crc = tail.get<std::uint32_t>("the checksum");
  if (stored_crc != detail::crc32(payload))
    head.fail("checksum mismatch: the contents are damaged");

  Checkpoint checkpoint;
  checkpoint.source_ = source;
  detail::Reader in(payload, source, header);
  const auto entries = in.get<std::uint32_t>("the metadata count");
  for (std::uint32_t i = 0; i < entries; ++i) {
    std::string key = in.get_string("a metadata key");
    checkpoint.metadata_[std::move(key)] = in.get_string("a metadata value");
  }
  const auto count = in.get<std::uint32_t>("the tensor count");
  for (std::uint32_t i = 0; i < count; ++i) {
    std::string name = in.get_string("a tensor name");
    Tensor t;
    const auto type = in.get<std::uint8_t>("a tensor type");
    if (type < 1 || type > 3)
      in.fail("tensor '" + name + "' has unknown type " + std::to_string(type));
    t.type = static_cast<Tensor::Type>(type);
    const auto rank = in.get<std::uint8_t>("a tensor rank");
    if (rank > 8)
      in.fail("tensor '" + name + "' has rank " + std::to_string(rank) + " (at most 8)");
    std::uint64_t elements = 1;
    for (int d = 0; d < rank; ++d) {
      const auto extent = in.get<std::uint64_t>("a tensor dimension");
      t.shape.push_back(extent);
      // Checked against the bytes left before multiplying, so no overflow and no huge allocation.
      if (extent != 0 && elements > payload.size() / extent) {
        in.fail("tensor '" + name + "' claims more elements than the file holds");
      }
      elements *= extent;
    }
    const std::uint64_t width = t.type == Tensor::Type::f32 ? 4 : 8;
    in.need(elements * width, "the tensor's elements");
    if (t.type == Tensor::Type::i64) {
      t.integer.resize(elements);
      for (auto& v : t.integer) v = in.get<std::int64_t>("an element");
    } else {
      t.real.resize(elements);
      for (auto& v : t.real) {
        v = t.type == Tensor::Type::f32 ? static_cast<double>(in.get<float>("an element"))
                                        : in.get<double>("an element");
      }
    }
    checkpoint.tensors_[std::move(name)] = std::move(t);
  }
  if (!in.at_end()) in.fail("unexpected bytes after the last tensor");
  return checkpoint;
}

}  // namespace ddpm::train
