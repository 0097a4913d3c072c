// SPDX-License-Identifier: MIT
// The noisy classifiers of classifier guidance (Dhariwal & Nichol 2021): of images (nn::Classifier)
// and of points (PointClassifier, an nn::Mlp whose outputs are class logits); training on x_t at
// uniform timesteps (a fraction of them clean), accuracy at a timestep, whole runs and checkpoints.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/data/images.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/nn/classifier.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/model_fields.hpp"
#include "ddpm/train/run_config.hpp"

namespace ddpm::train {

/// Options of train_noisy_classifier.
struct NoisyClassifierOptions {
  int steps = 3000;             ///< optimizer steps
  Index batch_size = 128;       ///< samples per step
  double learning_rate = 1e-3;  ///< Adam's learning rate
  double clean_fraction = 0.5;  ///< fraction of inputs at t = 0 (good clean-image features)
  std::uint64_t seed = 0;       ///< of the noise, timestep and batch draws
};

namespace detail {

/// Softmax of each row of `logits` into `out` (same shape); returns each row's log-sum-exp.
template <class Real>
std::vector<double> softmax_rows(const Batch<Real>& logits, Batch<Real>& out) {
  out.resize(logits.rows(), logits.cols());
  std::vector<double> log_z(static_cast<std::size_t>(logits.rows()));
  for (Index i = 0; i < logits.rows(); ++i) {
    const double max = static_cast<double>(logits.row(i).maxCoeff());
    double sum = 0.0;
    for (Index k = 0; k < logits.cols(); ++k)
      sum += std::exp(static_cast<double>(logits(i, k)) - max);
    log_z[static_cast<std::size_t>(i)] = max + std::log(sum);
    for (Index k = 0; k < logits.cols(); ++k) {
      out(i, k) =
          static_cast<Real>(std::exp(static_cast<double>(logits(i, k)) - max - std::log(sum)));
    }
  }
  return log_z;
}

}  // namespace detail

/// A classifier of noisy points (or any flat vectors) for classifier guidance: an nn::Mlp with
/// input_dim = the point's dimension, output_dim = the number of classes (>= 2) and no label
/// embedding, whose outputs are the logits of p(y | x_t, t). Trained by train_noisy_classifier;
/// satisfies GuidanceClassifier through log_prob_gradient (the Mlp's input gradient).
///
///   PointClassifier<float> c({.input_dim = 2, .output_dim = 8, .width = 128});
///   c.log_prob_gradient(x_t, t, labels, grad);  // for ClassifierGuidance
template <class Real>
class PointClassifier {
 public:
  /// The batch type log_prob_gradient accepts without a copy (any row-major view).
  using ConstRef = Eigen::Ref<const Batch<Real>>;

  /// A fresh MLP classifier of `config` (input: the data dimension, output: the classes).
  explicit PointClassifier(const nn::MlpConfig& config) : mlp_(validated(config)) {}

  /// The network's configuration.
  [[nodiscard]] const nn::MlpConfig& config() const noexcept { return mlp_.config(); }
  /// The number of classes (the MLP's outputs).
  [[nodiscard]] int num_classes() const noexcept { return static_cast<int>(mlp_.output_dim()); }
  /// The data dimension.
  [[nodiscard]] Index input_dim() const noexcept { return mlp_.input_dim(); }

  /// logits (batch x num_classes) of x_t at timesteps t.
  void logits(ConstRef x_t, std::span<const int> t, Batch<Real>& out) { mlp_.predict(x_t, t, out); }

  /// Mean cross-entropy of `labels` for x_t; with training on, also accumulates its gradient
  /// into the parameters' gradients (call zero_grad() first). Counts correct predictions
  /// (arg max = label) in `correct` when given.
  double cross_entropy(ConstRef x_t, std::span<const int> t, std::span<const int> labels,
                       Index* correct = nullptr) {
    check_labels(labels, x_t.rows());
    mlp_.predict(x_t, t, logits_);
    const std::vector<double> log_z = detail::softmax_rows(logits_, d_logits_);
    const Index n = x_t.rows();
    double loss = 0.0;
    Index right = 0;
    for (Index i = 0; i < n; ++i) {
      const int y = labels[static_cast<std::size_t>(i)];
      loss -= static_cast<double>(logits_(i, y)) - log_z[static_cast<std::size_t>(i)];
      Index argmax = 0;
      logits_.row(i).maxCoeff(&argmax);
      right += argmax == y ? 1 : 0;
      d_logits_(i, y) -= Real(1);  // d(-log p_y)/d logits = softmax - onehot
    }
    if (correct != nullptr) *correct = right;
    if (training_) {
      d_logits_ /= static_cast<Real>(n);
      mlp_.backward(d_logits_);
    }
    return loss / static_cast<double>(n);
  }

  /// grad.row(i) = d log p(labels[i] | x_t.row(i), t[i]) / d x_t.row(i), for classifier guidance.
  /// Parameter gradients are accumulated as a side effect (the classifier is not being trained).
  void log_prob_gradient(ConstRef x_t, std::span<const int> t, std::span<const int> labels,
                         Batch<Real>& grad) {
    check_labels(labels, x_t.rows());
    mlp_.predict(x_t, t, logits_);
    detail::softmax_rows(logits_, d_logits_);
    d_logits_ = -d_logits_;  // d log p_y / d logits = onehot - softmax
    for (Index i = 0; i < x_t.rows(); ++i) d_logits_(i, labels[static_cast<std::size_t>(i)]) += 1;
    mlp_.backward(d_logits_, grad);
  }

  /// The network's parameter blocks, for the optimizer.
  [[nodiscard]] auto parameters() { return mlp_.parameters(); }
  /// Zeroes the accumulated parameter gradients.
  void zero_grad() { mlp_.zero_grad(); }
  /// Training on: cross_entropy() accumulates parameter gradients. The Mlp itself always keeps
  /// its activations (it has no dropout), since log_prob_gradient needs them while sampling.
  void set_training(bool on) noexcept { training_ = on; }
  /// True while training (see set_training).
  [[nodiscard]] bool training() const noexcept { return training_; }

  /// The network, e.g. for its parameter count.
  [[nodiscard]] nn::Mlp<Real>& network() noexcept { return mlp_; }

 private:
  static const nn::MlpConfig& validated(const nn::MlpConfig& c) {
    ddpm::detail::require(c.output_dim >= 2, "output_dim", c.output_dim,
                          ">= 2: one logit per class, at least 2 classes");
    ddpm::detail::require(c.num_classes == 0, "num_classes", c.num_classes,
                          "0 (a classifier takes no label)");
    return c;
  }
  void check_labels(std::span<const int> labels, Index rows) const {
    ddpm::detail::require(static_cast<Index>(labels.size()) == rows, "labels.size()", labels.size(),
                          [&] { return "x_t.rows() = " + std::to_string(rows); });
    for (const int y : labels) {
      ddpm::detail::require(y >= 0 && y < num_classes(), "label", y,
                            [&] { return "a class in 0.." + std::to_string(num_classes() - 1); });
    }
  }

  nn::Mlp<Real> mlp_;
  bool training_ = true;
  Batch<Real> logits_, d_logits_;
};

/// Trains `classifier` (nn::Classifier or PointClassifier) with Adam on labeled batches from
/// `data(step, n, x0, labels)` (a LabeledDataSource: n rows and their classes for each step),
/// noised by `diffusion` at uniform timesteps (a fraction clean; timesteps and noise from
/// options.seed). `on_step(step, smoothed_loss)` follows each step; `num_classes` sets the
/// smoothed loss's start (log K, chance). Throws NonFiniteError if the loss diverges.
template <class Real, class C, class Data, class OnStep>
void train_noisy_classifier(C& classifier, Data&& data, int num_classes,
                            const GaussianDiffusion<Real>& diffusion,
                            const NoisyClassifierOptions& options, OnStep&& on_step) {
  static_assert(
      LabeledDataSource<std::remove_reference_t<Data>, Real>,
      "data must be callable as data(step, n, Batch<Real>& x0, std::vector<int>& labels)");
  optim::Adam<Real> adam({.learning_rate = options.learning_rate});
  const CounterRng rng(options.seed);
  const int T = diffusion.num_timesteps();
  Batch<Real> x0, noise, x_t;
  std::vector<int> labels, t(static_cast<std::size_t>(options.batch_size));
  double smoothed = std::log(static_cast<double>(std::max(num_classes, 2)));
  for (int step = 0; step < options.steps; ++step) {
    const auto counter = static_cast<std::uint32_t>(step);
    data(std::int64_t{step}, options.batch_size, x0, labels);
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
    if constexpr (requires { classifier.set_dropout_source(rng, counter); }) {
      classifier.set_dropout_source(rng, counter);
    }
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

/// Trains `classifier` on labeled images `set` (random flips) as the overload above.
template <class Real, class OnStep>
void train_noisy_classifier(nn::Classifier<Real>& classifier, const data::ImageSet& set,
                            const GaussianDiffusion<Real>& diffusion,
                            const NoisyClassifierOptions& options, OnStep&& on_step) {
  ddpm::detail::require(set.num_classes >= 2, "classifier data", set.num_classes,
                        "labeled images of at least 2 classes");
  train_noisy_classifier(classifier,
                         data::LabeledImageBatches{&set, CounterRng(options.seed), true},
                         set.num_classes, diffusion, options, std::forward<OnStep>(on_step));
}

/// Accuracy of `classifier` on x0 (one row per sample, its class in `labels`) noised to timestep
/// t (noise of stream user from `seed`), in batches of 500.
template <class Real, class C>
double noisy_accuracy(C& classifier, const Batch<Real>& x0, std::span<const int> labels, int t,
                      const GaussianDiffusion<Real>& diffusion, std::uint64_t seed) {
  const Index n = x0.rows();
  ddpm::detail::require(n >= 1 && static_cast<Index>(labels.size()) == n, "labels.size()",
                        labels.size(), "one label per row of x0, at least one");
  Index correct = 0;
  ddpm::detail::InferenceMode<C> inference(classifier);
  for (Index first = 0; first < n; first += 500) {
    const Index count = std::min<Index>(500, n - first);
    const Batch<Real> rows = x0.middleRows(first, count);
    const std::vector<int> ts(static_cast<std::size_t>(count), t);
    Batch<Real> noise(count, x0.cols()), x_t;
    CounterRng(seed).fill_normal(noise, stream::user, static_cast<std::uint32_t>(first),
                                 static_cast<std::uint32_t>(t));
    diffusion.q_sample(rows, ts, noise, x_t);
    Index right = 0;
    classifier.cross_entropy(
        x_t, ts, labels.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(count)),
        &right);
    correct += right;
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

/// Accuracy of `classifier` on `set` noised to timestep t (noise of stream user), in batches.
template <class Real>
double noisy_accuracy(nn::Classifier<Real>& classifier, const data::ImageSet& set, int t,
                      const GaussianDiffusion<Real>& diffusion, std::uint64_t seed) {
  return noisy_accuracy(classifier, set.images, std::span<const int>(set.labels), t, diffusion,
                        seed);
}

/// One run of train_classifier_run: the network's width, the diffusion of the noise it sees and
/// the optimizer. Its shape and classes come from the image set.
struct ClassifierRunOptions {
  int T = 1000;  ///< steps of the linear schedule (Ho et al. 2020) whose noise it learns to see
  Index base_channels = 32;                     ///< channels of the first resolution level
  std::vector<Index> channel_mult = {1, 2, 2};  ///< channel multiplier per level
  int steps = 3000;                             ///< optimizer steps
  Index batch_size = 128;                       ///< samples per step
  double learning_rate = 1e-3;                  ///< Adam's learning rate
  double clean_fraction = 0.5;                  ///< fraction of inputs at t = 0
  std::uint64_t seed = 0;  ///< weights and accuracy noise from seed, batches from seed + 3
};

/// The optimizer options of a run's options (ClassifierRunOptions or PointClassifierRunOptions):
/// its steps, batch, learning rate and clean fraction, with timesteps and noise from seed + 3.
template <class RunOptions>
[[nodiscard]] NoisyClassifierOptions noisy_classifier_options(const RunOptions& options) {
  return {.steps = options.steps,
          .batch_size = options.batch_size,
          .learning_rate = options.learning_rate,
          .clean_fraction = options.clean_fraction,
          .seed = options.seed + 3};
}

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

/// A trained classifier (of images, or PointClassifier) and its accuracy at each
/// classifier_report_timesteps(T).
template <class Real, class C = nn::Classifier<Real>>
struct ClassifierRun {
  C classifier;                                  ///< the trained classifier
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
  train_noisy_classifier(run.classifier, set, diffusion, noisy_classifier_options(options),
                         std::forward<OnStep>(on_step));
  for (const int t : classifier_report_timesteps(options.T)) {
    run.accuracy.emplace_back(t, noisy_accuracy(run.classifier, test, t, diffusion, options.seed));
  }
  return run;
}

/// The "format" field of a PointClassifier checkpoint (save_point_classifier).
inline constexpr std::string_view kPointClassifierFormat = "ddpm point classifier";

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
  if (c.has("format") && c.get("format") == kPointClassifierFormat) {
    throw FormatError("ddpm: '" + path.string() +
                      "' is a classifier of points (ddpm-toy2d train-classifier), not of images");
  }
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

// ---- the noisy-point classifier -----------------------------------------------------------------

/// One run of train_point_classifier_run: the network, the schedule of the noise it sees (that of
/// the diffusion models it will guide) and the optimizer.
struct PointClassifierRunOptions {
  ScheduleConfig schedule =
      ScheduleConfig::linear(1000);  ///< the schedule of the noise it learns to see
  Index width = 128;                 ///< hidden width of the MLP
  Index depth = 3;                   ///< hidden layers of the MLP
  Index embedding_dim = 64;          ///< sinusoidal time-embedding size
  int steps = 3000;                  ///< optimizer steps
  Index batch_size = 256;            ///< points per step
  double learning_rate = 1e-3;       ///< Adam's learning rate
  double clean_fraction = 0.0;       ///< fraction of inputs at t = 0 (guidance asks at every t)
  std::uint64_t seed = 0;  ///< weights and accuracy noise from seed, timesteps from seed + 3
};

/// Builds the PointClassifier of points of dimension `dim` and `num_classes` classes shaped by
/// `options`, trains it on `data(step, n, x0, labels)` (a LabeledDataSource, in the diffusion
/// model's units) with noise of options.schedule (train_noisy_classifier) and measures its
/// accuracy on test_x / test_labels at classifier_report_timesteps(T).
///
///   auto run = train_point_classifier_run<float>(data, test_x, test_y, 2, 8, {.steps = 500},
///                                                [](int, double) {});
template <class Real, class Data, class OnStep>
ClassifierRun<Real, PointClassifier<Real>> train_point_classifier_run(
    Data&& data, const Batch<Real>& test_x, std::span<const int> test_labels, Index dim,
    int num_classes, const PointClassifierRunOptions& options, OnStep&& on_step) {
  ddpm::detail::require(num_classes >= 2, "classifier classes", num_classes,
                        "at least 2 (labeled data)");
  nn::MlpConfig config;
  config.input_dim = dim;
  config.output_dim = num_classes;
  config.width = options.width;
  config.depth = options.depth;
  config.embedding_dim = options.embedding_dim;
  config.seed = options.seed;
  ClassifierRun<Real, PointClassifier<Real>> run{PointClassifier<Real>(config), {}};
  const GaussianDiffusion<Real> diffusion(options.schedule.make());
  train_noisy_classifier(run.classifier, std::forward<Data>(data), num_classes, diffusion,
                         noisy_classifier_options(options), std::forward<OnStep>(on_step));
  for (const int t : classifier_report_timesteps(diffusion.num_timesteps())) {
    run.accuracy.emplace_back(
        t, noisy_accuracy(run.classifier, test_x, test_labels, t, diffusion, options.seed));
  }
  return run;
}

/// A PointClassifier read back, with the schedule of the noise it was trained on and the name of
/// its data (e.g. "8gaussians").
template <class Real>
struct SavedPointClassifier {
  PointClassifier<Real> classifier;  ///< the trained classifier
  ScheduleConfig schedule;           ///< the schedule of the noise it was trained on
  std::string data;                  ///< the name of its data set, e.g. "8gaussians"
};

/// Writes a PointClassifier: format kPointClassifierFormat, its network as model.* fields (as a
/// diffusion run's Mlp), the schedule of its noise as diffusion.* fields with the betas, the data
/// name, and its weights as `classifier.<block>`.
template <class Real>
void save_point_classifier(const std::filesystem::path& path, PointClassifier<Real>& classifier,
                           const ScheduleConfig& schedule, const std::string& data) {
  FieldWriter w;
  w.text("format", std::string(kPointClassifierFormat));
  w.text("model.kind", std::string(ModelFields<nn::MlpConfig>::kind));
  ModelFields<nn::MlpConfig>::write(w, classifier.config());
  schedule.write(w);
  w.text("data.name", data);
  Checkpoint c;
  for (const Field& f : w.fields()) c.set(f.key, f.text);
  const std::vector<double> betas = schedule.base().betas();
  c.put<double>("diffusion.betas", std::span<const double>(betas));
  for (const ParameterBlock<Real>& block : classifier.parameters()) {
    c.put<Real>("classifier." + block.name, std::span<const Real>(block.value));
  }
  c.save(path);
}

/// Reads what save_point_classifier wrote, in inference mode; throws FormatError naming the file
/// for anything else (an image classifier, a diffusion checkpoint) or a malformed field.
template <class Real>
SavedPointClassifier<Real> load_point_classifier(const std::filesystem::path& path) {
  const Checkpoint c = Checkpoint::load(path);
  if (!c.has("format") || c.get("format") != kPointClassifierFormat) {
    const std::string what = c.has("classifier.classes")
                                 ? "a classifier of images (ddpm-images train-classifier)"
                             : c.has("run.format") ? "a diffusion model checkpoint"
                                                   : "not a classifier";
    throw FormatError("ddpm: '" + path.string() + "' is " + what +
                      ", not a classifier of points (ddpm-toy2d train-classifier writes one)");
  }
  const FieldReader r(c);
  if (r.text("model.kind") != ModelFields<nn::MlpConfig>::kind) {
    r.fail("model.kind", "= '" + r.text("model.kind") + "', not 'mlp'");
  }
  const nn::MlpConfig config = ModelFields<nn::MlpConfig>::read(r);
  if (config.output_dim < 2 || config.num_classes != 0) {
    r.fail("model.output_dim", "must be >= 2 (the classes) with model.classes = 0");
  }
  SavedPointClassifier<Real> saved{PointClassifier<Real>(config), ScheduleConfig::read(r),
                                   r.text("data.name")};
  for (const ParameterBlock<Real>& block : saved.classifier.parameters()) {
    c.take<Real>("classifier." + block.name, block.value);
  }
  saved.classifier.set_training(false);
  return saved;
}

}  // namespace ddpm::train
