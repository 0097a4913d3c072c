// SPDX-License-Identifier: MIT
// Tests of train_classifier_run: its network is shaped by the image set, it reports accuracy at
// t = 0, T/4, T/2 and 3T/4, it learns an easy two-class set, and a seed fixes its result bitwise.
#include "ddpm/train/noisy_classifier.hpp"

#include <doctest/doctest.h>

#include <array>
#include <utility>
#include <vector>

#include "support.hpp"

namespace {

using ddpm::Index;
using ddpm::data::ImageSet;

/// n one-channel 8x8 images of two classes told apart by their top and bottom halves (class 0
/// bright on top, class 1 below), each with its own small offset; horizontal flips keep the class.
ImageSet halves(Index n) {
  ImageSet set;
  set.channels = 1;
  set.height = set.width = 8;
  set.num_classes = 2;
  set.images.resize(n, 64);
  for (Index i = 0; i < n; ++i) {
    const int label = static_cast<int>(i % 2);
    set.labels.push_back(label);
    for (Index k = 0; k < 64; ++k) {
      const bool top = k < 32;
      set.images(i, k) = (top == (label == 0) ? 0.8f : -0.8f) + 0.01f * static_cast<float>(i);
    }
  }
  return set;
}

std::vector<float> weights(ddpm::nn::Classifier<float>& classifier) {
  std::vector<float> all;
  for (const ddpm::ParameterBlock<float>& block : classifier.parameters()) {
    all.insert(all.end(), block.value.begin(), block.value.end());
  }
  return all;
}

const ddpm::train::ClassifierRunOptions kTiny{.T = 50,
                                              .base_channels = 8,
                                              .channel_mult = {1, 2},
                                              .steps = 30,
                                              .batch_size = 8,
                                              .learning_rate = 3e-3,
                                              .seed = 5};

}  // namespace

TEST_CASE("classifier_report_timesteps are 0, T/4, T/2 and 3T/4, rounded down") {
  CHECK(ddpm::train::classifier_report_timesteps(1000) == std::array<int, 4>{0, 250, 500, 750});
  CHECK(ddpm::train::classifier_report_timesteps(50) == std::array<int, 4>{0, 12, 25, 37});
}

TEST_CASE("classifier_config takes the set's shape and classes and the options' width and seed") {
  ImageSet set = halves(4);
  set.channels = 3;
  set.height = 16;
  set.width = 12;
  set.num_classes = 7;
  const ddpm::nn::ClassifierConfig c = ddpm::train::classifier_config(set, kTiny);
  CHECK(c.image_channels == 3);
  CHECK(c.height == 16);
  CHECK(c.width == 12);
  CHECK(c.num_classes == 7);
  CHECK(c.base_channels == 8);
  CHECK(c.channel_mult == std::vector<Index>{1, 2});
  CHECK(c.seed == 5);
}

TEST_CASE("train_classifier_run learns two classes and is fixed by its seed") {
  const ImageSet set = halves(16);
  int last_step = 0;
  ddpm::train::ClassifierRun<float> run = ddpm::train::train_classifier_run<float>(
      set, set, kTiny, [&](int step, double) { last_step = step; });
  CHECK(last_step == 30);
  CHECK(run.classifier.config().height == 8);

  SUBCASE("accuracy at the documented timesteps; the clean images are all told apart") {
    REQUIRE(run.accuracy.size() == 4);
    const std::array<int, 4> t = ddpm::train::classifier_report_timesteps(50);
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(run.accuracy[i].first == t[i]);
      CHECK(run.accuracy[i].second >= 0.0);
      CHECK(run.accuracy[i].second <= 1.0);
    }
    // Measured 1.0 after 30 steps: the halves differ by 1.6 per pixel, far above the offsets.
    CHECK(run.accuracy[0].second == 1.0);
  }
  SUBCASE("the same seed gives the same weights and report bitwise; another seed does not") {
    ddpm::train::ClassifierRun<float> again =
        ddpm::train::train_classifier_run<float>(set, set, kTiny, [](int, double) {});
    CHECK(weights(again.classifier) == weights(run.classifier));
    CHECK(again.accuracy == run.accuracy);
    ddpm::train::ClassifierRunOptions other = kTiny;
    other.seed = 6;
    ddpm::train::ClassifierRun<float> different =
        ddpm::train::train_classifier_run<float>(set, set, other, [](int, double) {});
    CHECK(weights(different.classifier) != weights(run.classifier));
  }
}

TEST_CASE("train_classifier_run refuses unlabeled images") {
  ImageSet set = halves(4);
  set.num_classes = 0;
  set.labels.clear();
  DDPM_CHECK_INVALID("classifier data",
                     ddpm::train::train_classifier_run<float>(set, set, kTiny, [](int, double) {}));
}
