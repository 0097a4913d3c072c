// SPDX-License-Identifier: MIT
// The class-conditional UNet with dropout and its labeled data that the Trainer tests share: every
// per-step random choice (dropout masks, label dropout) is exercised on 4x4 images.
#pragma once

#include <cstdint>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/unet.hpp"

namespace ddpm::test {

/// A two-level UNet on 1x4x4 images, dropout 0.2, 3 classes.
inline nn::UNetConfig conditional_unet_config() {
  nn::UNetConfig config;
  config.height = 4;
  config.width = 4;
  config.base_channels = 4;
  config.channel_mult = {1, 2};
  config.groups = 2;
  config.dropout = 0.2;
  config.num_classes = 3;
  config.seed = 4;
  return config;
}

/// Labeled data for it: normal images from (seed 21, step), labels (row + step) mod 3.
inline void labeled_noise_images(std::int64_t step, Index n, Batch<float>& out,
                                 std::vector<int>& labels) {
  out.resize(n, 16);
  CounterRng(21).fill_normal(out, stream::user, 0, static_cast<std::uint32_t>(step));
  labels.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i)
    labels[static_cast<std::size_t>(i)] = static_cast<int>((i + step) % 3);
}

}  // namespace ddpm::test
