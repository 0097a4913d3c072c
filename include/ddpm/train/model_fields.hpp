// SPDX-License-Identifier: MIT
// The bundled networks' configurations as checkpoint fields (model.*), for RunConfig: what a
// checkpoint must record to rebuild the network whose weights it holds.
#pragma once

#include <array>
#include <string_view>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/resblock.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/train/run_config.hpp"

namespace ddpm::train {

/// nn::Mlp: every field but the initialization seed (the weights are in the checkpoint).
template <>
struct ModelFields<nn::MlpConfig> {
  static constexpr std::string_view kind = "mlp";  ///< the checkpoint's model.kind
  /// Writes the configuration as model.* fields.
  static void write(FieldWriter& w, const nn::MlpConfig& c) {
    w.integer("model.input_dim", c.input_dim);
    w.integer("model.output_dim", c.output_dim);
    w.integer("model.width", c.width);
    w.integer("model.depth", c.depth);
    w.integer("model.embedding", c.embedding_dim);
    w.boolean("model.residual", c.residual);
    w.integer("model.classes", c.num_classes);
    w.choice("model.activation", c.activation);
    w.boolean("model.zero_init_output", c.zero_init_output);
    w.real("model.max_period", c.max_period);
  }
  /// Reads the model.* fields back strictly.
  static nn::MlpConfig read(const FieldReader& r) {
    nn::MlpConfig c;
    c.input_dim = r.integer<Index>("model.input_dim", 1, 1 << 20);
    c.output_dim = r.integer<Index>("model.output_dim", 1, 1 << 20);
    c.width = r.integer<Index>("model.width", 1, 1 << 20);
    c.depth = r.integer<Index>("model.depth", 1, 1024);
    c.embedding_dim = r.integer<Index>("model.embedding", 2, 1 << 20);
    c.residual = r.boolean("model.residual");
    c.num_classes = r.integer<int>("model.classes", 0, 1 << 20);
    c.activation = r.choice<nn::Activation>("model.activation");
    c.zero_init_output = r.boolean("model.zero_init_output");
    c.max_period = r.real("model.max_period");
    return c;
  }
};

/// nn::UNet: every field but the initialization seed.
template <>
struct ModelFields<nn::UNetConfig> {
  static constexpr std::string_view kind = "unet";  ///< the checkpoint's model.kind
  /// Writes the configuration as model.* fields.
  static void write(FieldWriter& w, const nn::UNetConfig& c) {
    w.integer("model.channels", c.image_channels);
    w.integer("model.height", c.height);
    w.integer("model.width", c.width);
    w.integer("model.output_channels", c.output_channels);
    w.integer("model.base", c.base_channels);
    w.list("model.mult", c.channel_mult);
    w.integer("model.res_blocks", c.res_blocks);
    w.list("model.attention", c.attention_resolutions);
    w.integer("model.heads", c.attention_heads);
    w.integer("model.groups", c.groups);
    w.real("model.dropout", c.dropout);
    w.integer("model.classes", c.num_classes);
    w.choice("model.injection", c.injection);
    w.boolean("model.zero_init", c.zero_init);
    w.real("model.max_period", c.max_period);
  }
  /// Reads the model.* fields back strictly.
  static nn::UNetConfig read(const FieldReader& r) {
    nn::UNetConfig c;
    c.image_channels = r.integer<Index>("model.channels", 1, 1 << 16);
    c.height = r.integer<Index>("model.height", 1, 1 << 16);
    c.width = r.integer<Index>("model.width", 1, 1 << 16);
    c.output_channels = r.integer<Index>("model.output_channels", 1, 1 << 16);
    c.base_channels = r.integer<Index>("model.base", 1, 1 << 16);
    c.channel_mult = r.list<Index>("model.mult");
    c.res_blocks = r.integer<Index>("model.res_blocks", 1, 1024);
    c.attention_resolutions = r.list<Index>("model.attention");
    c.attention_heads = r.integer<Index>("model.heads", 1, 1 << 16);
    c.groups = r.integer<Index>("model.groups", 1, 1 << 16);
    c.dropout = r.real("model.dropout");
    c.num_classes = r.integer<int>("model.classes", 0, 1 << 20);
    c.injection = r.choice<nn::EmbeddingInjection>("model.injection");
    c.zero_init = r.boolean("model.zero_init");
    c.max_period = r.real("model.max_period");
    return c;
  }
};

/// The configuration of a run of the bundled MLP or UNet.
using MlpRun = RunConfig<nn::MlpConfig>;
/// \copydoc MlpRun
using UNetRun = RunConfig<nn::UNetConfig>;

}  // namespace ddpm::train
