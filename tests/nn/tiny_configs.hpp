// SPDX-License-Identifier: MIT
// The small network configurations the nn tests share (fast, yet every layer kind is exercised).
#pragma once

#include "ddpm/core/types.hpp"
#include "ddpm/nn/classifier.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/unet.hpp"

namespace ddpm::test {

/// A 3-input MLP of width 8, depth 3, embedding 6.
inline nn::MlpConfig tiny_mlp_config(Index output_dim, int num_classes, bool residual) {
  nn::MlpConfig config;
  config.input_dim = 3;
  config.output_dim = output_dim;
  config.width = 8;
  config.depth = 3;
  config.embedding_dim = 6;
  config.residual = residual;
  config.num_classes = num_classes;
  config.seed = 17;
  return config;
}

/// A two-level UNet on 2x4x6 images with 3 output channels.
inline nn::UNetConfig tiny_unet_config() {
  nn::UNetConfig config;
  config.image_channels = 2;
  config.height = 4;
  config.width = 6;
  config.output_channels = 3;
  config.base_channels = 4;
  config.channel_mult = {1, 2};
  config.res_blocks = 1;
  config.groups = 2;
  config.seed = 5;
  return config;
}

/// A two-level classifier of 1x4x4 images into 3 classes with 5 features.
inline nn::ClassifierConfig tiny_classifier_config() {
  nn::ClassifierConfig config;
  config.image_channels = 1;
  config.height = 4;
  config.width = 4;
  config.base_channels = 4;
  config.channel_mult = {1, 2};
  config.groups = 2;
  config.num_classes = 3;
  config.feature_dim = 5;
  config.seed = 9;
  return config;
}

}  // namespace ddpm::test
