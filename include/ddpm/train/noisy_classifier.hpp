// SPDX-License-Identifier: MIT
// The noisy-image classifier of classifier guidance (Dhariwal & Nichol 2021): training on x_t at
// uniform timesteps (a fraction of them clean), accuracy at a timestep, a whole run shaped by the
// image set, and its checkpoint.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/data/images.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/nn/classifier.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/run_config.hpp"

namespace ddpm::train {

/// Options of train_noisy_classifier.
struct NoisyClassifierOptions {
  int steps = 3000;
  Index batch_size = 128;
  double learning_rate = 1e-3;
  double clean_fraction = 0.5;  ///< fraction of inputs at t = 0 (good clean-image features)
  std::uint64_t seed = 0;
};

/// Trains `classifier` with Adam on labeled `set`, noised by `diffusion` at uniform timesteps
/// (a fraction clean). `on_step(step, smoothed_loss)` follows each step. Throws NonFiniteError
/// if the loss diverges.
template <class Real, class OnStep>
void train_noisy_classifier(nn::Classifier<Real>& classifier, const data::ImageSet& set,
                            const GaussianDiffusion<Real>& diffusion,
                            const NoisyClassifierOptions& options, OnStep&& on_step) {
  ddpm::detail::require(set.num_classes >= 2, "classifier data", set.num_classes,
                        "labeled images of at least 2 classes");
  optim::Adam<Real> adam({.learning_rate = options.learning_rate});
  const CounterRng rng(options.seed);
  const int T = diffusion.num_timesteps();
  Batch<Real> x0(options.batch_size, set.images.cols()), noise, x_t;
  std::vector<int> labels, t(static_cast<std::size_t>(options.batch_size));
  double smoothed = std::log(static_cast<double>(set.num_classes));
  for (int step = 0; step < options.steps; ++step) {
    const auto counter = static_cast<std::uint32_t>(step);
    data::sample_image_batch(set, rng, counter, true, x0, labels);
    for (Index i = 0; i < options.batch_size; ++i) {
      const auto row = static_cast<std::uint32_t>(i);
      const bool clean = rng.uniform(stream::timesteps, row, counter, 1) < options.clean_fraction;
      t[static_cast<std::size_t>(i)] =
          clean ? 0
                : static_cast<int>(rng.uniform_int(stream::timesteps, row, counter,
                                                   static_cast<std::uint64_t>(T)));
    }
    noise.resize(x0.rows(), x0.cols());
    rng.fill_normal(noise, stream::forward_noise, 0, counter);
    diffusion.q_sample(x0, t, noise, x_t);
    classifier.zero_grad();
    classifier.set_dropout_source(rng, counter);
    const double loss = classifier.cross_entropy(x_t, t, labels);
    if (!std::isfinite(loss)) {
      throw NonFiniteError("ddpm: classifier training diverged at step " + std::to_string(step) +
                           " (try a lower learning rate)");
    }
    adam.step(classifier.parameters());
    smoothed = 0.98 * smoothed + 0.02 * loss;
    on_step(step + 1, smoothed);
  }
}

/// Accuracy of `classifier` on `set` noised to timestep t (noise of stream user), in batches.
template <class Real>
double noisy_accuracy(nn::Classifier<Real>& classifier, const data::ImageSet& set, int t,
                      const GaussianDiffusion<Real>& diffusion, std::uint64_t seed) {
  const Index n = set.images.rows();
  Index correct = 0;
  ddpm::detail::InferenceMode<nn::Classifier<Real>> inference(classifier);
  for (Index first = 0; first < n; first += 500) {
    const Index count = std::min<Index>(500, n - first);
    const Batch<Real> x0 = set.images.middleRows(first, count);
    const std::vector<int> ts(static_cast<std::size_t>(count), t);
    Batch<Real> noise(count, x0.cols()), x_t;
    CounterRng(seed).fill_normal(noise, stream::user, static_cast<std::uint32_t>(first),
                                 static_cast<std::uint32_t>(t));
    diffusion.q_sample(x0, ts, noise, x_t);
    Index right = 0;
    classifier.cross_entropy(
        x_t, ts, std::span<const int>(set.labels.data() + first, static_cast<std::size_t>(count)),
        &right);
    correct += right;
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

/// One run of train_classifier_run: the network's width, the diffusion of the noise it sees and
/// the optimizer. Its shape and classes come from the image set.
struct ClassifierRunOptions {
  int T = 1000;  ///< steps of the linear schedule (Ho et al. 2020) whose noise it learns to see
  Index base_channels = 32;
  std::vector<Index> channel_mult = {1, 2, 2};
  int steps = 3000;
  Index batch_size = 128;
  double learning_rate = 1e-3;
  double clean_fraction = 0.5;  ///< fraction of inputs at t = 0
  std::uint64_t seed = 0;       ///< weights and accuracy noise from seed, batches from seed + 3
};

/// The timesteps at which train_classifier_run reports accuracy: 0, T/4, T/2 and 3T/4.
[[nodiscard]] inline std::array<int, 4> classifier_report_timesteps(int T) noexcept {
  return {0, T / 4, T / 2, (3 * T) / 4};
}

/// The classifier of images shaped like `set`'s (channels, height, width, classes), with the width
/// of `options` and weights from options.seed.
[[nodiscard]] inline nn::ClassifierConfig classifier_config(const data::ImageSet& set,
                                                            const ClassifierRunOptions& options) {
  nn::ClassifierConfig config;
  config.height = set.height;
  config.width = set.width;
  config.image_channels = set.channels;
  config.num_classes = set.num_classes;
  config.base_channels = options.base_channels;
  config.channel_mult = options.channel_mult;
  config.seed = options.seed;
  return config;
}

/// A trained classifier and its accuracy at each classifier_report_timesteps(T).
template <class Real>
struct ClassifierRun {
  nn::Classifier<Real> classifier;
  std::vector<std::pair<int, double>> accuracy;  ///< (t, fraction right on the test images)
};

/// Builds the classifier of classifier_config(set, options), trains it on `set` with noise of the
/// linear schedule of options.T (train_noisy_classifier; `on_step(step, smoothed_loss)` follows
/// each step) and measures its accuracy on `test` (held-out images, or `set` again).
///
///   ClassifierRun<float> run = train_classifier_run<float>(set, set, {.steps = 100}, on_step);
///   save_classifier("classifier.ckpt", run.classifier, 1000);
template <class Real, class OnStep>
ClassifierRun<Real> train_classifier_run(const data::ImageSet& set, const data::ImageSet& test,
                                         const ClassifierRunOptions& options, OnStep&& on_step) {
  ddpm::detail::require(set.num_classes >= 2, "classifier data", set.num_classes,
                        "labeled images of at least 2 classes");
  ClassifierRun<Real> run{nn::Classifier<Real>(classifier_config(set, options)), {}};
  const GaussianDiffusion<Real> diffusion(NoiseSchedule::linear(options.T));
  train_noisy_classifier(run.classifier, set, diffusion,
                         {.steps = options.steps,
                          .batch_size = options.batch_size,
                          .learning_rate = options.learning_rate,
                          .clean_fraction = options.clean_fraction,
                          .seed = options.seed + 3},
                         std::forward<OnStep>(on_step));
  for (const int t : classifier_report_timesteps(options.T)) {
    run.accuracy.emplace_back(t, noisy_accuracy(run.classifier, test, t, diffusion, options.seed));
  }
  return run;
}

/// Writes the classifier's configuration (classifier.*) and weights; T is that of its training.
template <class Real>
void save_classifier(const std::filesystem::path& path, nn::Classifier<Real>& classifier, int T) {
  const nn::ClassifierConfig& config = classifier.config();
  FieldWriter w;
  w.text("format", "ddpm classifier");
  w.integer("classifier.height", config.height);
  w.integer("classifier.width", config.width);
  w.integer("classifier.channels", config.image_channels);
  w.integer("classifier.classes", config.num_classes);
  w.integer("classifier.base", config.base_channels);
  w.list("classifier.mult", config.channel_mult);
  w.integer("classifier.T", T);
  Checkpoint c;
  for (const Field& f : w.fields()) c.set(f.key, f.text);
  for (const ParameterBlock<Real>& block : classifier.parameters()) {
    c.put<Real>("classifier." + block.name, std::span<const Real>(block.value));
  }
  c.save(path);
}

/// Reads a classifier written by save_classifier, in inference mode.
template <class Real>
nn::Classifier<Real> load_classifier(const std::filesystem::path& path) {
  const Checkpoint c = Checkpoint::load(path);
  if (!c.has("classifier.classes")) {
    throw FormatError("ddpm: '" + path.string() + "' is not a classifier (no classifier.* fields)");
  }
  const FieldReader r(c);
  nn::ClassifierConfig config;
  config.height = r.integer<Index>("classifier.height", 1, 1 << 16);
  config.width = r.integer<Index>("classifier.width", 1, 1 << 16);
  config.image_channels = r.integer<Index>("classifier.channels", 1, 1 << 16);
  config.num_classes = r.integer<int>("classifier.classes", 2, 1 << 20);
  config.base_channels = r.integer<Index>("classifier.base", 1, 1 << 16);
  config.channel_mult = r.list<Index>("classifier.mult");
  nn::Classifier<Real> classifier(config);
  for (const ParameterBlock<Real>& block : classifier.parameters()) {
    c.take<Real>("classifier." + block.name, block.value);
  }
  classifier.set_training(false);
  return classifier;
}

}  // namespace ddpm::train
