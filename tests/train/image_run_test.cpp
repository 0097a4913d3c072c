// SPDX-License-Identifier: MIT
// Tests of fit_to_images: the UNet takes the set's shape (and classes when asked), its output
// channels follow the variance, and run.data records where the set came from.
#include "ddpm/train/image_run.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "support.hpp"

namespace image_run_test {

namespace {

ddpm::data::ImageSet colour_set(int num_classes) {
  ddpm::data::ImageSet set;
  set.channels = 3;
  set.height = 8;
  set.width = 4;
  set.images = ddpm::Batch<float>::Constant(5, 3 * 8 * 4, 0.25f);
  set.images(2, 7) = -0.5f;
  set.num_classes = num_classes;
  for (int i = 0; i < (num_classes > 0 ? 5 : 0); ++i) set.labels.push_back(i % num_classes);
  return set;
}

}  // namespace

TEST_CASE("fit_to_images shapes the UNet and records the data") {
  ddpm::train::UNetRun run;
  run.model = ddpm::nn::unet_small_config();
  const ddpm::data::ImageSet set = colour_set(4);

  SUBCASE("a folder: its absolute path, rows and fingerprint; unconditional unless asked") {
    ddpm::train::fit_to_images(run, set, "some/../pictures", false);
    CHECK(run.model.image_channels == 3);
    CHECK(run.model.height == 8);
    CHECK(run.model.width == 4);
    CHECK(run.model.output_channels == 3);
    CHECK(run.model.num_classes == 0);
    CHECK(run.data.name == "images");
    CHECK(run.data.path == (std::filesystem::current_path() / "pictures").string());
    CHECK(run.data.rows == 5);
    CHECK(run.data.fingerprint == ddpm::train::data_fingerprint(set.images));
    CHECK(run.data.fingerprint != ddpm::train::data_fingerprint(colour_set(4).images.topRows(4)));
  }
  SUBCASE("no path: Fashion-MNIST; class-conditional takes the classes") {
    ddpm::train::fit_to_images(run, set, "", true);
    CHECK(run.data.name == "fashion-mnist");
    CHECK(run.data.path == ddpm::data::kFashionMnistDir);
    CHECK(run.model.num_classes == 4);
  }
  SUBCASE("a learned variance doubles the output channels") {
    run.diffusion.options.variance = ddpm::VarianceKind::learned_range;
    ddpm::train::fit_to_images(run, set, "x", false);
    CHECK(run.model.output_channels == 6);
  }
  SUBCASE("class-conditional training needs labels") {
    DDPM_CHECK_INVALID("class-conditional data",
                       ddpm::train::fit_to_images(run, colour_set(0), "x", true));
  }
}

}  // namespace image_run_test
