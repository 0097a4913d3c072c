// SPDX-License-Identifier: MIT
// Tests of train_classifier_run: its network is shaped by the image set, it reports accuracy at
// t = 0, T/4, T/2 and 3T/4, it learns an easy two-class set, and a seed fixes its result bitwise;
// and of the noisy-point classifier: its gradients against finite differences, its run, its
// checkpoint (round trip and each corrupt case).
#include "ddpm/train/noisy_classifier.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/nn/gradient_check.hpp"
#include "support.hpp"

namespace noisy_classifier_test {

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

// ---- the noisy-point classifier
// ------------------------------------------------------------------

namespace {

using ddpm::Batch;
using ddpm::train::PointClassifier;

ddpm::nn::MlpConfig tiny_point_net(int classes) {
  ddpm::nn::MlpConfig c;
  c.input_dim = 2;
  c.output_dim = classes;
  c.width = 8;
  c.depth = 2;
  c.embedding_dim = 4;
  c.seed = 3;
  return c;
}

/// log p(labels[i] | x.row(i), t[i]) summed over rows, from the logits (an independent
/// log-softmax in double).
double summed_log_prob(PointClassifier<double>& c, const Batch<double>& x, std::span<const int> t,
                       std::span<const int> labels) {
  Batch<double> logits;
  c.logits(x, t, logits);
  double total = 0.0;
  for (Index i = 0; i < x.rows(); ++i) {
    const double log_z = std::log(logits.row(i).array().exp().sum());
    total += logits(i, labels[static_cast<std::size_t>(i)]) - log_z;
  }
  return total;
}

/// Labeled 2-D points: class k of 3 near the corner (2 cos 2πk/3, 2 sin 2πk/3), n per step.
struct ThreeBlobs {
  void operator()(std::int64_t step, Index n, Batch<float>& x, std::vector<int>& labels) const {
    x = ddpm::test::random_batch<float>(n, 2, 100 + static_cast<std::uint64_t>(step)) * 0.2f;
    labels.resize(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) {
      const int k = static_cast<int>((i + step) % 3);
      labels[static_cast<std::size_t>(i)] = k;
      x(i, 0) += static_cast<float>(2 * std::cos(2 * std::numbers::pi * k / 3));
      x(i, 1) += static_cast<float>(2 * std::sin(2 * std::numbers::pi * k / 3));
    }
  }
};

}  // namespace

TEST_CASE("PointClassifier: input and parameter gradients match finite differences") {
  PointClassifier<double> c(tiny_point_net(3));
  const Batch<double> x = ddpm::test::random_batch(5, 2, 9);
  const std::vector<int> t = {0, 3, 7, 12, 19};
  const std::vector<int> labels = {0, 2, 1, 1, 0};

  SUBCASE("log_prob_gradient is d log p(y | x_t) / d x_t") {
    Batch<double> grad;
    c.log_prob_gradient(x, t, labels, grad);
    REQUIRE(grad.rows() == 5);
    REQUIRE(grad.cols() == 2);
    Batch<double> probe = x, numeric(5, 2);
    ddpm::nn::numeric_gradient(
        [&] { return summed_log_prob(c, probe, t, labels); },
        std::span<double>(probe.data(), static_cast<std::size_t>(probe.size())),
        std::span<double>(numeric.data(), static_cast<std::size_t>(numeric.size())));
    // Double precision, h = 1e-6: the central difference is good to ~1e-9 relative.
    CHECK(ddpm::nn::max_gradient_error(
              std::span<const double>(grad.data(), static_cast<std::size_t>(grad.size())),
              std::span<const double>(numeric.data(), static_cast<std::size_t>(numeric.size()))) <
          1e-6);
  }
  SUBCASE("cross_entropy accumulates d mean(-log p) / d parameters; off in inference") {
    c.zero_grad();
    const double loss = c.cross_entropy(x, t, labels);
    CHECK(loss == doctest::Approx(-summed_log_prob(c, x, t, labels) / 5.0).epsilon(1e-12));
    const std::span<double> values = c.network().parameter_values();
    const std::vector<double> analytic(c.network().gradient_values().begin(),
                                       c.network().gradient_values().end());
    std::vector<double> numeric(values.size());
    ddpm::nn::numeric_gradient([&] { return -summed_log_prob(c, x, t, labels) / 5.0; }, values,
                               std::span<double>(numeric));
    CHECK(ddpm::nn::max_gradient_error(std::span<const double>(analytic),
                                       std::span<const double>(numeric)) < 1e-6);
    c.zero_grad();
    c.set_training(false);
    (void)c.cross_entropy(x, t, labels);
    const std::span<const double> after = c.network().gradient_values();
    CHECK(std::all_of(after.begin(), after.end(), [](double g) { return g == 0.0; }));
  }
  SUBCASE("bad labels and shapes are refused") {
    Batch<double> grad;
    DDPM_CHECK_INVALID("label", c.log_prob_gradient(x, t, std::vector<int>{0, 3, 1, 1, 0}, grad));
    DDPM_CHECK_INVALID("labels.size()", c.cross_entropy(x, t, std::vector<int>{0, 1}));
    DDPM_CHECK_INVALID("output_dim", PointClassifier<double>(tiny_point_net(1)));
  }
}

TEST_CASE("train_point_classifier_run learns three blobs and is fixed by its seed") {
  const ddpm::train::PointClassifierRunOptions options{
      .schedule = ddpm::train::ScheduleConfig::linear(40),
      .width = 16,
      .depth = 2,
      .embedding_dim = 8,
      .steps = 150,
      .batch_size = 32,
      .learning_rate = 1e-2,
      .seed = 4};
  Batch<float> test;
  std::vector<int> test_labels;
  ThreeBlobs{}(1000, 300, test, test_labels);
  int last = 0;
  auto run = ddpm::train::train_point_classifier_run<float>(
      ThreeBlobs{}, test, test_labels, 2, 3, options, [&](int step, double) { last = step; });
  CHECK(last == 150);
  REQUIRE(run.accuracy.size() == 4);
  CHECK(run.accuracy[0].first == 0);
  CHECK(run.accuracy[3].first == 30);
  // The blobs are 3.5 apart with sd 0.2: clean points are all told apart (measured 1.0), and at
  // t = T/4 (ab ~ 0.5 of the linear schedule scaled to T = 40) still far above chance (1/3):
  // measured 1.0, 0.90, 0.48 and 0.31 at t = 0, 10, 20, 30.
  INFO("accuracy at t = 0, 10, 20, 30: " << run.accuracy[0].second << " " << run.accuracy[1].second
                                         << " " << run.accuracy[2].second << " "
                                         << run.accuracy[3].second);
  CHECK(run.accuracy[0].second >= 0.99);
  CHECK(run.accuracy[1].second > 0.5);
  auto again = ddpm::train::train_point_classifier_run<float>(ThreeBlobs{}, test, test_labels, 2, 3,
                                                              options, [](int, double) {});
  const std::span<const float> a = run.classifier.network().parameter_values();
  const std::span<const float> b = again.classifier.network().parameter_values();
  CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  CHECK(again.accuracy == run.accuracy);
}

TEST_CASE("point classifier checkpoints round-trip and refuse other files") {
  ddpm::test::TempDir dir;
  PointClassifier<float> c(tiny_point_net(8));
  const ddpm::train::ScheduleConfig schedule = ddpm::train::ScheduleConfig::cosine(30);
  const auto path = dir.path / "classifier.ckpt";
  ddpm::train::save_point_classifier(path, c, schedule, "8gaussians");

  SUBCASE("round trip: weights bitwise, network, schedule and data name") {
    ddpm::train::SavedPointClassifier<float> saved =
        ddpm::train::load_point_classifier<float>(path);
    const std::span<const float> a = c.network().parameter_values();
    const std::span<const float> b = saved.classifier.network().parameter_values();
    CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
    CHECK(saved.classifier.num_classes() == 8);
    CHECK(saved.classifier.config().width == 8);
    CHECK(saved.schedule.kind == ddpm::train::ScheduleKind::cosine);
    CHECK(saved.schedule.num_timesteps == 30);
    CHECK(saved.data == "8gaussians");
    CHECK_FALSE(saved.classifier.training());
  }
  SUBCASE("an image classifier, a point classifier read as one of images") {
    ddpm::nn::Classifier<float> images(ddpm::train::classifier_config(halves(2), kTiny));
    ddpm::train::save_classifier(dir.path / "images.ckpt", images, 50);
    CHECK_THROWS_WITH_AS(ddpm::train::load_point_classifier<float>(dir.path / "images.ckpt"),
                         doctest::Contains("is a classifier of images"), ddpm::FormatError);
    CHECK_THROWS_WITH_AS(ddpm::train::load_classifier<float>(path),
                         doctest::Contains("is a classifier of points"), ddpm::FormatError);
  }
  SUBCASE("corrupt: a missing field, a bad value, a missing or short weight tensor") {
    const ddpm::train::Checkpoint good = ddpm::train::Checkpoint::load(path);
    const auto without = [&](const std::string& skip) {
      ddpm::train::Checkpoint c2;
      for (const auto& [key, value] : good.metadata()) {
        if (key != skip) c2.set(key, value);
      }
      for (const auto& [name, tensor] : good.tensors()) {
        if (name != skip) c2.put<double>(name, std::span<const double>(tensor.real));
      }
      return c2;
    };
    const auto refused = [&](ddpm::train::Checkpoint c2, const std::string& message) {
      c2.save(dir.path / "bad.ckpt");
      CHECK_THROWS_WITH_AS(ddpm::train::load_point_classifier<float>(dir.path / "bad.ckpt"),
                           doctest::Contains(message.c_str()), ddpm::FormatError);
    };
    refused(without("model.width"), "field 'model.width' is missing");
    refused(without("format"), "not a classifier");
    refused(without("diffusion.betas"), "diffusion.betas");
    refused(without("classifier.layer0.weight"), "classifier.layer0.weight");
    ddpm::train::Checkpoint bad = without("");
    bad.set("model.output_dim", "1");
    refused(bad, "model.output_dim");
    bad = without("");
    bad.set("diffusion.T", "31");
    refused(bad, "diffusion.betas");
    bad = without("");
    bad.put<double>("classifier.layer1.bias", std::vector<double>{1.0});
    refused(bad, "classifier.layer1.bias");
  }
}

}  // namespace noisy_classifier_test
