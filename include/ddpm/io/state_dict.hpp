// SPDX-License-Identifier: MIT
// PyTorch state_dicts of the bundled networks in safetensors files: the name and layout map between
// ddpm's parameter blocks and the modules of benchmarks/torch_models.py, both ways.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/classifier.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/resblock.hpp"
#include "ddpm/nn/unet.hpp"

namespace ddpm::io {

/// A safetensors file is not the state_dict of the model it is loaded into. The message names the
/// file and lists every missing, unexpected and mismatched (shape or dtype) tensor at once, each
/// with its shapes, so one failed load shows everything that differs.
class StateDictError : public FormatError {
 public:
  /// `missing`, `unexpected` and `mismatched` hold one line per tensor (its name first).
  StateDictError(const std::string& source, std::vector<std::string> missing,
                 std::vector<std::string> unexpected, std::vector<std::string> mismatched)
      : FormatError(compose(source, missing, unexpected, mismatched)),
        missing_(std::move(missing)),
        unexpected_(std::move(unexpected)),
        mismatched_(std::move(mismatched)) {}

  /// "name [shape]" of each tensor the model has and the file lacks.
  [[nodiscard]] const std::vector<std::string>& missing() const noexcept { return missing_; }
  /// "name [shape]" of each tensor of the file that the model does not have.
  [[nodiscard]] const std::vector<std::string>& unexpected() const noexcept { return unexpected_; }
  /// "name: file [shape] DTYPE, expected [shape]" of each tensor whose shape or dtype is wrong.
  [[nodiscard]] const std::vector<std::string>& mismatched() const noexcept { return mismatched_; }

 private:
  static std::string compose(const std::string& source, const std::vector<std::string>& missing,
                             const std::vector<std::string>& unexpected,
                             const std::vector<std::string>& mismatched) {
    std::string message =
        "ddpm: '" + source +
        "' is not the state_dict of this model: " + std::to_string(missing.size()) + " missing, " +
        std::to_string(unexpected.size()) + " unexpected, " + std::to_string(mismatched.size()) +
        " mismatched tensor" +
        (missing.size() + unexpected.size() + mismatched.size() == 1 ? "" : "s") +
        " (is the configuration the one the weights were trained with?)";
    const auto section = [&](std::string_view title, const std::vector<std::string>& lines) {
      for (const std::string& line : lines) message.append("\n  ").append(title).append(line);
    };
    section("missing: ", missing);
    section("unexpected: ", unexpected);
    section("mismatched: ", mismatched);
    return message;
  }

  std::vector<std::string> missing_;
  std::vector<std::string> unexpected_;
  std::vector<std::string> mismatched_;
};

/// How a ddpm parameter block's values sit in the matching PyTorch tensor.
enum class TensorLayout {
  same,    ///< the same values in the same order (biases, norms, embedding tables)
  linear,  ///< ddpm's in x out (row-major) is torch's nn.Linear.weight [out, in] transposed
  /// ddpm's row (ky * k + kx) * in + ci, column co is torch's Conv2d.weight [co, ci, ky, kx]
  conv,
};

/// One tensor of a bundled network's state_dict: the ddpm parameter block and the PyTorch tensor
/// of the same name (torch_models.py names its modules as ddpm names its blocks), the torch shape
/// and how ddpm's values are laid out in it.
struct StateDictEntry {
  std::string name;                 ///< e.g. "down0.block0.conv1.weight", in both frameworks
  std::vector<std::int64_t> shape;  ///< torch's shape, e.g. {8, 4, 3, 3}
  TensorLayout layout = TensorLayout::same;  ///< where ddpm keeps each torch element
  /// Number of values (the product of `shape`).
  [[nodiscard]] std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (const std::int64_t d : shape) n *= d;
    return n;
  }
};

namespace detail {

/// Appends the entries of the bundled layers in the order they register their parameters, so the
/// table's order is parameters() order and a flat parameter vector is its entries back to back.
class StateDictTable {
 public:
  void linear(const std::string& name, Index in, Index out) {
    add(name + ".weight", {out, in}, TensorLayout::linear);
    add(name + ".bias", {out}, TensorLayout::same);
  }
  void conv(const std::string& name, Index in, Index out, Index kernel) {
    add(name + ".weight", {out, in, kernel, kernel}, TensorLayout::conv);
    add(name + ".bias", {out}, TensorLayout::same);
  }
  void norm(const std::string& name, Index channels) {
    add(name + ".weight", {channels}, TensorLayout::same);
    add(name + ".bias", {channels}, TensorLayout::same);
  }
  void embedding(const std::string& name, Index rows, Index dim) {
    add(name + ".weight", {rows, dim}, TensorLayout::same);
  }
  // nn::TimeEmbedding: "time.0", "time.1" and the label table.
  void time_embedding(Index sinusoidal_dim, Index dim, int num_classes) {
    linear("time.0", sinusoidal_dim, dim);
    linear("time.1", dim, dim);
    if (num_classes > 0) embedding("label_embedding", Index{num_classes} + 1, dim);
  }
  // nn::ResBlock's registration order.
  void block(const std::string& name, Index in, Index out, Index emb,
             nn::EmbeddingInjection injection) {
    norm(name + ".norm1", in);
    conv(name + ".conv1", in, out, 3);
    linear(name + ".emb", emb, injection == nn::EmbeddingInjection::scale_shift ? 2 * out : out);
    norm(name + ".norm2", out);
    conv(name + ".conv2", out, out, 3);
    if (in != out) conv(name + ".skip", in, out, 1);
  }
  // nn::SpatialAttention: qkv and proj are 1x1 convolutions in torch.
  void attention(const std::string& name, Index channels) {
    norm(name + ".norm", channels);
    conv(name + ".qkv", channels, 3 * channels, 1);
    conv(name + ".proj", channels, channels, 1);
  }

  std::vector<StateDictEntry> take() && { return std::move(entries_); }

 private:
  void add(std::string name, std::vector<std::int64_t> shape, TensorLayout layout) {
    entries_.push_back({std::move(name), std::move(shape), layout});
  }
  std::vector<StateDictEntry> entries_;
};

inline std::string shape_text(std::span<const std::int64_t> shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

inline std::int64_t table_size(const std::vector<StateDictEntry>& table) {
  std::int64_t n = 0;
  for (const StateDictEntry& e : table) n += e.numel();
  return n;
}

/// Throws std::logic_error unless `table` lists exactly the model's parameter blocks, in order,
/// with their sizes: a table that disagrees with the network it describes is a bug in ddpm.
template <class Real>
void check_table(const std::vector<StateDictEntry>& table,
                 std::span<const ParameterBlock<Real>> blocks) {
  bool same = table.size() == blocks.size();
  for (std::size_t i = 0; same && i < table.size(); ++i) {
    same = table[i].name == blocks[i].name &&
           table[i].numel() == static_cast<std::int64_t>(blocks[i].value.size());
  }
  if (!same) {
    throw std::logic_error("ddpm: io::state_dict_table does not describe the model's parameters()");
  }
}

/// Position of torch's element `t` (row-major in entry.shape) in ddpm's block.
inline std::int64_t ddpm_index(const StateDictEntry& e, std::int64_t t) {
  switch (e.layout) {
    case TensorLayout::same:
      return t;
    case TensorLayout::linear: {  // torch [out, in] -> ddpm [in][out]
      const std::int64_t out = e.shape[0], in = e.shape[1];
      return (t % in) * out + t / in;
    }
    case TensorLayout::conv: {  // torch [co, ci, ky, kx] -> ddpm [(ky k + kx) in + ci][co]
      const std::int64_t out = e.shape[0], in = e.shape[1], k = e.shape[2];
      const std::int64_t kx = t % k, ky = (t / k) % k, ci = (t / (k * k)) % in,
                         co = t / (k * k * in);
      return ((ky * k + kx) * in + ci) * out + co;
    }
  }
  return t;
}

}  // namespace detail

/// The state_dict of nn::Mlp(config): "layer<k>.weight/bias" for k = 0..depth and
/// "label_embedding.weight" when num_classes > 0 (torch_models.ToyMlp).
inline std::vector<StateDictEntry> state_dict_table(const nn::MlpConfig& c) {
  detail::StateDictTable t;
  for (Index k = 0; k < c.depth; ++k) {
    t.linear("layer" + std::to_string(k), k == 0 ? c.input_dim + c.embedding_dim : c.width,
             c.width);
  }
  t.linear("layer" + std::to_string(c.depth), c.width, c.output_dim);
  if (c.num_classes > 0) t.embedding("label_embedding", Index{c.num_classes} + 1, c.embedding_dim);
  return std::move(t).take();
}

/// The state_dict of nn::UNet(config) (torch_models.UNet), in parameters() order.
inline std::vector<StateDictEntry> state_dict_table(const nn::UNetConfig& c) {
  detail::StateDictTable t;
  const Index emb = 4 * c.base_channels;
  t.time_embedding(c.base_channels, emb, c.num_classes);
  const auto attention_at = [&](Index side) {
    for (const Index r : c.attention_resolutions) {
      if (r == side) return true;
    }
    return false;
  };
  // The graph's nodes in build order: blocks (+ attention at their side), convs.
  const auto block = [&](const std::string& name, Index in, Index out, Index side) {
    t.block(name, in, out, emb, c.injection);
    if (attention_at(side)) t.attention(name + ".attention", out);
  };
  t.conv("conv_in", c.image_channels, c.base_channels, 3);
  const auto levels = static_cast<Index>(c.channel_mult.size());
  Index channels = c.base_channels;
  std::vector<std::vector<Index>> skips(static_cast<std::size_t>(levels));
  for (Index l = 0; l < levels; ++l) {
    const Index out = c.base_channels * c.channel_mult[static_cast<std::size_t>(l)];
    const std::string level = "down" + std::to_string(l);
    for (Index b = 0; b < c.res_blocks; ++b) {
      block(level + ".block" + std::to_string(b), channels, out, c.height >> l);
      channels = out;
      skips[static_cast<std::size_t>(l)].push_back(channels);
    }
    if (l + 1 < levels) t.conv(level + ".downsample", channels, channels, 3);
  }
  t.block("middle.block0", channels, channels, emb, c.injection);
  t.attention("middle.attention", channels);
  t.block("middle.block1", channels, channels, emb, c.injection);
  for (Index l = levels - 1; l >= 0; --l) {
    const Index out = c.base_channels * c.channel_mult[static_cast<std::size_t>(l)];
    const std::string level = "up" + std::to_string(l);
    std::vector<Index>& level_skips = skips[static_cast<std::size_t>(l)];
    for (Index b = 0; b < c.res_blocks; ++b) {
      block(level + ".block" + std::to_string(b), channels + level_skips.back(), out,
            c.height >> l);
      level_skips.pop_back();
      channels = out;
    }
    if (l > 0) t.conv(level + ".upsample_conv", channels, channels, 3);
  }
  t.norm("out.norm", channels);
  t.conv("out.conv", channels, c.output_channels, 3);
  return std::move(t).take();
}

/// The state_dict of nn::Classifier(config) (torch_models.Classifier), in parameters() order.
inline std::vector<StateDictEntry> state_dict_table(const nn::ClassifierConfig& c) {
  detail::StateDictTable t;
  const Index emb = 4 * c.base_channels;
  t.time_embedding(c.base_channels, emb, 0);
  t.conv("conv_in", c.image_channels, c.base_channels, 3);
  const auto levels = static_cast<Index>(c.channel_mult.size());
  Index channels = c.base_channels;
  for (Index l = 0; l < levels; ++l) {
    const Index out = c.base_channels * c.channel_mult[static_cast<std::size_t>(l)];
    const std::string level = "down" + std::to_string(l);
    for (Index b = 0; b < c.res_blocks; ++b) {
      t.block(level + ".block" + std::to_string(b), channels, out, emb,
              nn::EmbeddingInjection::add);
      channels = out;
    }
    if (l + 1 < levels) t.conv(level + ".downsample", channels, channels, 3);
  }
  t.norm("out.norm", channels);
  t.linear("head.0", channels, c.feature_dim);
  t.linear("head.1", c.feature_dim, c.num_classes);
  return std::move(t).take();
}

/// Reads the tensors `table` describes from `file` into `values`, a flat vector in the table's
/// (parameters()) order, converting each dtype (F64, F32, F16, BF16) to Real and each torch layout
/// to ddpm's. Throws StateDictError listing every missing, unexpected and mismatched tensor, and
/// InvalidArgument if values.size() is not the table's total; `values` is unchanged on error.
/// `__metadata__` is ignored.
template <class Real>
void load_state_dict(const SafetensorsFile& file, const std::vector<StateDictEntry>& table,
                     std::span<Real> values) {
  const std::int64_t total = detail::table_size(table);
  ddpm::detail::require(
      static_cast<std::int64_t>(values.size()) == total, "values.size()", values.size(),
      [&] { return "the state_dict's " + std::to_string(total) + " parameters"; });
  // Missing and mismatched tensors in the model's order, unexpected ones in the file's.
  std::vector<std::string> missing, unexpected, mismatched;
  std::set<std::string_view> expected;
  for (const StateDictEntry& e : table) {
    expected.insert(e.name);
    if (!file.contains(e.name)) {
      missing.push_back(e.name + " " + detail::shape_text(e.shape));
      continue;
    }
    const SafetensorsTensor& tensor = file.tensor(e.name);
    if (tensor.shape != e.shape || !is_floating(tensor.dtype)) {
      mismatched.push_back(e.name + ": file " + detail::shape_text(tensor.shape) + " " +
                           std::string(to_string(tensor.dtype)) + ", expected " +
                           detail::shape_text(e.shape) + " F64, F32, F16 or BF16");
    }
  }
  for (const SafetensorsTensor& tensor : file.tensors()) {
    if (!expected.contains(tensor.name)) {
      unexpected.push_back(tensor.name + " " + detail::shape_text(tensor.shape));
    }
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    throw StateDictError(file.source(), std::move(missing), std::move(unexpected),
                         std::move(mismatched));
  }
  // Everything matches: convert into a copy so that `values` changes only on success.
  std::vector<Real> loaded(values.size());
  std::size_t offset = 0;
  for (const StateDictEntry& e : table) {
    const std::vector<Real> torch_values = file.template values<Real>(e.name);
    const std::int64_t n = e.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      loaded[offset + static_cast<std::size_t>(detail::ddpm_index(e, i))] =
          torch_values[static_cast<std::size_t>(i)];
    }
    offset += static_cast<std::size_t>(n);
  }
  std::copy(loaded.begin(), loaded.end(), values.begin());
}

/// Adds the tensors `table` describes to `w` under their torch names and shapes, from `values` in
/// the table's (parameters()) order, stored as `stored` (F32 by default, what PyTorch trains in).
/// Use it for weights kept outside a model, e.g. a checkpoint's EMA shadow:
/// \code
///   io::add_state_dict(writer, io::state_dict_table(config), std::span<const double>(shadow));
/// \endcode
template <class Real>
void add_state_dict(SafetensorsWriter& w, const std::vector<StateDictEntry>& table,
                    std::span<const Real> values, SafetensorsDtype stored = SafetensorsDtype::f32) {
  const std::int64_t total = detail::table_size(table);
  ddpm::detail::require(
      static_cast<std::int64_t>(values.size()) == total, "values.size()", values.size(),
      [&] { return "the state_dict's " + std::to_string(total) + " parameters"; });
  std::vector<Real> torch_values;
  std::size_t offset = 0;
  for (const StateDictEntry& e : table) {
    const std::int64_t n = e.numel();
    torch_values.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      torch_values[static_cast<std::size_t>(i)] =
          values[offset + static_cast<std::size_t>(detail::ddpm_index(e, i))];
    }
    w.template add<Real>(e.name, e.shape, std::span<const Real>(torch_values), stored);
    offset += static_cast<std::size_t>(n);
  }
}

/// Loads the PyTorch state_dict of torch_models.ToyMlp (same configuration) into `model`.
/// Throws StateDictError listing every missing, unexpected and mismatched tensor; the model is
/// unchanged on error.
/// \code
///   nn::Mlp<float> model(nn::toy_mlp_config());
///   io::load_state_dict(io::SafetensorsFile::load("toy.safetensors"), model);
/// \endcode
template <class Real>
void load_state_dict(const SafetensorsFile& file, nn::Mlp<Real>& model) {
  const std::vector<StateDictEntry> table = state_dict_table(model.config());
  detail::check_table<Real>(table, model.parameters());
  load_state_dict<Real>(file, table, model.parameter_values());
}

/// Loads the PyTorch state_dict of torch_models.UNet (same configuration) into `model`, as the
/// Mlp overload.
template <class Real>
void load_state_dict(const SafetensorsFile& file, nn::UNet<Real>& model) {
  const std::vector<StateDictEntry> table = state_dict_table(model.config());
  detail::check_table<Real>(table, model.parameters());
  load_state_dict<Real>(file, table, model.parameter_values());
}

/// Loads the PyTorch state_dict of torch_models.Classifier (same configuration) into `model`, as
/// the Mlp overload.
template <class Real>
void load_state_dict(const SafetensorsFile& file, nn::Classifier<Real>& model) {
  const std::vector<StateDictEntry> table = state_dict_table(model.config());
  detail::check_table<Real>(table, model.parameters());
  load_state_dict<Real>(file, table, model.parameter_values());
}

/// Adds `model`'s weights to `w` under the torch_models.ToyMlp state_dict names and shapes,
/// so `ToyMlp(config).load_state_dict(...)` reads them in PyTorch.
template <class Real>
void add_state_dict(SafetensorsWriter& w, const nn::Mlp<Real>& model,
                    SafetensorsDtype stored = SafetensorsDtype::f32) {
  add_state_dict<Real>(w, state_dict_table(model.config()), model.parameter_values(), stored);
}

/// Adds `model`'s weights under the torch_models.UNet state_dict names and shapes.
template <class Real>
void add_state_dict(SafetensorsWriter& w, const nn::UNet<Real>& model,
                    SafetensorsDtype stored = SafetensorsDtype::f32) {
  add_state_dict<Real>(w, state_dict_table(model.config()), model.parameter_values(), stored);
}

/// Adds `model`'s weights under the torch_models.Classifier state_dict names and shapes.
template <class Real>
void add_state_dict(SafetensorsWriter& w, const nn::Classifier<Real>& model,
                    SafetensorsDtype stored = SafetensorsDtype::f32) {
  add_state_dict<Real>(w, state_dict_table(model.config()), model.parameter_values(), stored);
}

}  // namespace ddpm::io
