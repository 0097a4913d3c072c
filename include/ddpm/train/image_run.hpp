// SPDX-License-Identifier: MIT
// A UNet run shaped by the image set it trains on: what every image-training program sets before
// it builds the network.
#pragma once

#include <filesystem>
#include <string>

#include "ddpm/core/error.hpp"
#include "ddpm/data/images.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/train/model_fields.hpp"
#include "ddpm/train/run_config.hpp"

namespace ddpm::train {

/// Fits run.model to `set`: its channels, height and width, the output channels that
/// run.diffusion needs (twice the channels when the variance is learned) and, when
/// `class_conditional`, the set's classes (the set must be labeled). Records in run.data where the
/// set came from: `data` as given to data::load_training_images ("fashion-mnist" at
/// data::kFashionMnistDir when empty, else "images" at its absolute path), with the set's row
/// count and fingerprint.
///
///   const data::ImageSet set = data::load_training_images("faces");
///   fit_to_images(run, set, "faces", false);  // run.data.path: "/home/me/faces"
inline void fit_to_images(UNetRun& run, const data::ImageSet& set,
                          const std::filesystem::path& data, bool class_conditional) {
  run.data = {.name = data.empty() ? "fashion-mnist" : "images",
              .path = data.empty() ? std::string(data::kFashionMnistDir)
                                   : std::filesystem::absolute(data).lexically_normal().string(),
              .rows = set.images.rows(),
              .fingerprint = data_fingerprint(set.images)};
  nn::UNetConfig& m = run.model;
  m.image_channels = set.channels;
  m.height = set.height;
  m.width = set.width;
  m.output_channels = run.diffusion.learned_variance() ? 2 * set.channels : set.channels;
  if (class_conditional) {
    ddpm::detail::require(set.num_classes > 0, "class-conditional data", run.data.path,
                          "labeled images (MNIST-format labels or class subfolders)");
    m.num_classes = set.num_classes;
  }
}

}  // namespace ddpm::train
