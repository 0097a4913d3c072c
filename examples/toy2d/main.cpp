// SPDX-License-Identifier: MIT
// ddpm-toy2d: train a DDPM on a 2D toy distribution (or your own 2-D points),
// unconditional or conditioned on the class (8gaussians' component, the moon,
// the circle), sample from it with classifier-free or classifier guidance, and
// measure how good the samples are. The project's main demo; see README.md and
// docs/toy2d_conditional.md for the options.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../common_options.hpp"
#include "../common_sampling.hpp"
#include "../common_train.hpp"
#include "../common_weights.hpp"
#include "ddpm/data/points.hpp"
#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/eval/ode_likelihood.hpp"
#include "ddpm/io/csv.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/npy.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/mixture_denoiser.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/train/noisy_classifier.hpp"
#include "ddpm/viz/strips.hpp"

namespace {

namespace fs = std::filesystem;
using Real = float;
using Model = ddpm::nn::Mlp<Real>;
using Run = ddpm::train::MlpRun;
using Exact = ddpm::GaussianMixtureDenoiser<Real>;
using PointClassifier = ddpm::train::PointClassifier<Real>;

struct SampleArgs : ddpm_examples::SampleArgs, ddpm_examples::GuidanceArgs {
  bool exact = false;  // the exact denoiser of the 8gaussians mixture instead of the network
  std::vector<double> guidance_sweep;  // sample: a strip of the same labels at these weights w
  ddpm_examples::XInit x_init;         // sample: x_T from a file instead of the prior
  ddpm_examples::WeightsArgs weights;  // sample: a safetensors file instead of a checkpoint
};

// The data name of a --weights run without __metadata__: no data known, samples in model units.
constexpr const char* kNoData = "none";

// The run's data in the user's units: a built-in distribution, or the points of train --data (with
// the standardization and picture frame the checkpoint records).
struct Points {
  ddpm::train::DataConfig config;
  ddpm::Batch<double> rows;  // the file's points; empty for a built-in distribution

  // train --data FILE: the points, their standardization and a frame fixed for the run (the
  // bounding box with a margin of 10% of its width and height on each side).
  static Points from_file(const std::string& file) {
    Points p;
    const std::string path = fs::absolute(file).lexically_normal().string();
    p.rows = ddpm::data::load_points(path);
    const auto s = ddpm::data::Standardization::fit(p.rows, path);
    const Eigen::RowVector2d low = p.rows.colwise().minCoeff(), high = p.rows.colwise().maxCoeff();
    const Eigen::RowVector2d margin = 0.1 * (high - low);
    p.config = {.name = "file",
                .path = path,
                .rows = p.rows.rows(),
                .fingerprint = ddpm::train::data_fingerprint(p.rows),
                .mean = s.mean,
                .scale = s.scale,
                .frame = {low[0] - margin[0], high[0] + margin[0], low[1] - margin[1],
                          high[1] + margin[1]}};
    std::printf(
        "data: %lld points from %s; standardized with mean (%g, %g) "
        "and std (%g, %g)\n",
        static_cast<long long>(p.rows.rows()), path.c_str(), s.mean[0], s.mean[1], s.scale[0],
        s.scale[1]);
    return p;
  }
  // sample / eval: the checkpoint's data, the file read again.
  static Points open(const ddpm::train::DataConfig& config) {
    Points p{config, {}};
    if (!config.from_file()) return p;
    p.rows = ddpm::data::load_points(config.path);
    if (ddpm::train::data_fingerprint(p.rows) != config.fingerprint) {
      std::cerr << "ddpm-toy2d: warning: " << config.path << " changed since training (now "
                << p.rows.rows() << " points; the model was trained on " << config.rows << ")\n";
    }
    return p;
  }

  [[nodiscard]] bool from_file() const { return config.from_file(); }
  // Whether draw() has points: a built-in distribution, or a file that could be read.
  [[nodiscard]] bool has_data() const {
    return from_file() ? rows.rows() > 0 : config.name != kNoData;
  }
  [[nodiscard]] ddpm::data::Standardization units() const { return {config.mean, config.scale}; }
  [[nodiscard]] ddpm::io::Frame frame() const {
    const std::vector<double>& f = config.frame;
    return f.size() == 4 ? ddpm::io::Frame{f[0], f[1], f[2], f[3]} : ddpm::io::Frame::square(4.5);
  }
  [[nodiscard]] ddpm::data::ToyDataset toy() const {
    return ddpm::parse_enum<ddpm::data::ToyDataset>(config.name);
  }
  // Classes of the data (0: none, or a file).
  [[nodiscard]] int classes() const { return from_file() ? 0 : ddpm::data::toy_classes(toy()); }
  // n points: fresh samples of the distribution, or min(n, N) rows of the file in an order fixed by
  // `seed`.
  [[nodiscard]] ddpm::Batch<double> draw(ddpm::Index n, std::uint64_t seed) const {
    if (!from_file()) return ddpm::data::sample_toy2d<double>(toy(), n, seed);
    return ddpm::data::pick_rows(rows, ddpm::data::shuffled_rows(rows.rows(), seed), 0,
                                 std::min(n, rows.rows()));
  }
};

// The exact classifier of the 8gaussians mixture (--classifier exact): grad_x log p(k | x_t) =
// (eps(x_t) - eps(x_t | k)) / sqrt(1 - ab_t), the difference of the exact denoiser's
// unconditional and conditional scores (Bayes' rule), so guidance by it is the ideal one.
class ExactClassifier {
 public:
  ExactClassifier(const ddpm::GaussianMixture& mixture, const ddpm::NoiseSchedule& schedule)
      : eps_(mixture, schedule, ddpm::ModelOutput::epsilon),
        sigma_(static_cast<std::size_t>(schedule.original_size()), 0.0) {
    for (int i = 0; i < schedule.size(); ++i) {
      sigma_[static_cast<std::size_t>(schedule.timestep(i))] =
          schedule.sqrt_one_minus_alphas_cumprod()[static_cast<std::size_t>(i)];
    }
  }
  void log_prob_gradient(const ddpm::Batch<Real>& x_t, std::span<const int> t,
                         std::span<const int> labels, ddpm::Batch<Real>& grad) {
    eps_.predict(x_t, t, labels, conditional_);  // checks the labels and timesteps
    eps_.predict(x_t, t, unconditional_);
    grad = unconditional_ - conditional_;
    for (ddpm::Index i = 0; i < grad.rows(); ++i) {
      grad.row(i) /=
          static_cast<Real>(sigma_[static_cast<std::size_t>(t[static_cast<std::size_t>(i)])]);
    }
  }

 private:
  Exact eps_;
  std::vector<double> sigma_;  // sqrt(1 - ab) by original timestep
  ddpm::Batch<Real> conditional_, unconditional_;
};

// What draws the samples: the network, or with --exact the exact denoiser of the 8gaussians
// mixture (for any 8gaussians checkpoint: only its diffusion is used); and the classifier of
// classifier guidance: none, one from train-classifier, or with --classifier exact the mixture's.
struct Sampler {
  Model* model = nullptr;
  std::optional<Exact> exact;
  std::optional<PointClassifier> classifier;
  std::optional<ExactClassifier> exact_classifier;
  int classes = 0;             // classes the denoiser takes (0: unconditional)
  int classifier_classes = 0;  // 0: no classifier guidance

  // f(denoiser, classifier or a null PointClassifier*).
  template <class F>
  ddpm::Batch<Real> visit(F&& f) {
    const auto with = [&](auto& denoiser) {
      if (classifier) return f(denoiser, &*classifier);
      if (exact_classifier) return f(denoiser, &*exact_classifier);
      return f(denoiser, static_cast<PointClassifier*>(nullptr));
    };
    return exact ? with(*exact) : with(*model);
  }
};

// The exact mixture of the run's data; `option` (--exact or --classifier) needs one.
ddpm::GaussianMixture exact_mixture(const Run& run, const std::string& option) {
  std::optional<ddpm::GaussianMixture> mixture;
  if (!run.data.from_file() && run.data.name != kNoData) {
    mixture = ddpm::data::toy_mixture(ddpm::parse_enum<ddpm::data::ToyDataset>(run.data.name));
  }
  ddpm::detail::require(mixture.has_value(), option, run.data.name,
                        "a model of 8gaussians (the data set with an exact mixture form)");
  return *mixture;
}

Sampler make_sampler(Model& model, const Run& run, const SampleArgs& args) {
  Sampler s;
  s.model = &model;
  s.classes = run.model.num_classes;
  if (args.exact) {
    ddpm::detail::require(!run.diffusion.learned_variance(), "--exact", "a learned variance",
                          "a model with a fixed variance (the exact denoiser predicts none)");
    s.exact.emplace(exact_mixture(run, "--exact"), run.diffusion.schedule.make(),
                    run.diffusion.options.output);
    s.classes = static_cast<int>(s.exact->mixture().components());
  }
  if (args.classifier == "exact") {
    const ddpm::GaussianMixture mixture = exact_mixture(run, "--classifier exact");
    s.classifier_classes = static_cast<int>(mixture.components());
    s.exact_classifier.emplace(mixture, run.diffusion.schedule.make());
  } else if (!args.classifier.empty()) {
    ddpm::train::SavedPointClassifier<Real> saved =
        ddpm::train::load_point_classifier<Real>(args.classifier);
    const ddpm::train::ScheduleConfig& mine = run.diffusion.schedule;
    if (saved.schedule.base().betas() != mine.base().betas()) {
      throw ddpm::FormatError("ddpm: classifier '" + args.classifier + "' learned the noise of a " +
                              std::string(ddpm::to_string(saved.schedule.kind)) +
                              " schedule of T = " + std::to_string(saved.schedule.num_timesteps) +
                              ", the model's is " + std::string(ddpm::to_string(mine.kind)) +
                              " of T = " + std::to_string(mine.num_timesteps) +
                              ": train it with the model's --schedule and --T");
    }
    if (saved.data != run.data.name) {
      throw ddpm::FormatError("ddpm: classifier '" + args.classifier + "' classifies " +
                              saved.data + ", the model was trained on " + run.data.name);
    }
    s.classifier_classes = saved.classifier.num_classes();
    s.classifier.emplace(std::move(saved.classifier));
  }
  return s;
}

// One label per sample as --label asks (ddpm::sample_labels; without it the classes in turn):
// with a classifier its classes name the labels, also for an unconditional model (which never
// sees them).
std::vector<int> labels_for(const Sampler& s, const SampleArgs& args, ddpm::Index n) {
  if (s.classifier_classes == 0) {
    return ddpm::sample_labels(n, args.label, s.classes, args.guidance, false, "--");
  }
  ddpm::detail::require(args.guidance == 0.0, "--guidance", args.guidance,
                        "0 with --classifier (one kind of guidance at a time)");
  ddpm::detail::require(s.classes == 0 || s.classes == s.classifier_classes, "--classifier",
                        args.classifier, "a classifier of the model's classes");
  // Without --label the classes in turn, each guided by the classifier.
  return ddpm::sample_labels(n, args.label, s.classifier_classes, 0.0,
                             args.label != ddpm::kClassesInTurn, "--");
}

// Draws one sample per label with the sampler and guidance of args, in the user's units, from
// x_T = *x_init (one row per label) when given, else from the prior; writes a reverse-process
// strip when strip_path is not empty.
ddpm::Batch<Real> draw_samples(Sampler& s, const Run& run, const Points& points,
                               const SampleArgs& args, std::span<const int> labels,
                               std::uint64_t seed, const fs::path& strip_path,
                               const ddpm::Batch<Real>* x_init = nullptr) {
  const ddpm::GaussianDiffusion<Real> diffusion = run.diffusion.make<Real>();
  const int T = diffusion.num_timesteps();
  ddpm::viz::ReverseStripRecorder<Real> strip(
      ddpm::sampling_timesteps(args.spec(), diffusion.schedule()), T, points.frame());
  std::printf("sampling %zu points: %s\n", labels.size(), args.describe(T).c_str());
  // Chunks bound memory (the network's activations grow with the rows of one call) without
  // changing a sample; the strip shows the first chunk.
  constexpr ddpm::Index kChunk = 8192;
  // With MPI ranks each draws its share of the points; the bar counts rank 0's.
  const ddpm::Index n =
      ddpm::rank_share(ddpm_examples::world(), static_cast<ddpm::Index>(labels.size())).size();
  const ddpm::Index steps = args.steps(T);
  ddpm::io::ProgressBar progress(steps * ((n + kChunk - 1) / kChunk),
                                 args.sampler_name() + " sampling");
  const ddpm::LabeledSampling options{.sampler = args.spec(),
                                      .guidance = args.guidance,
                                      .guidance_rescale = args.guidance_rescale,
                                      .classifier_scale = args.classifier_scale,
                                      .chunk = kChunk,
                                      .ranks = &ddpm_examples::world()};
  ddpm_examples::SamplingThreads threads;
  const ddpm::Batch<Real> samples = s.visit([&](auto& denoiser, auto* classifier) {
    return ddpm_examples::sample_labeled_or_from<Real>(
        options, diffusion, denoiser, classifier, labels, 2, x_init, ddpm::CounterRng(seed),
        [&](ddpm::Index first, const ddpm::SamplerProgress<Real>& p) {
          threads.step_done();
          progress.update(first / kChunk * steps + p.done);
          if (first == 0) strip(p);
        });
  });
  progress.finish();
  if (!strip_path.empty() && ddpm_examples::writes_files()) {
    std::vector<ddpm::io::Panel> panels = strip.panels();
    for (ddpm::io::Panel& panel : panels) panel.points = points.units().to_data(panel.points);
    ddpm::io::write_png(strip_path, ddpm::io::render_strip(panels));
  }
  return points.units().to_data(samples);
}

// Colors of classes 0..7 in the pictures (more classes reuse them).
constexpr std::array<ddpm::io::Rgb, 8> kClassColors{{{31, 119, 180},
                                                     {255, 127, 14},
                                                     {44, 160, 44},
                                                     {214, 39, 40},
                                                     {148, 103, 189},
                                                     {140, 86, 75},
                                                     {227, 119, 194},
                                                     {23, 190, 207}}};

// The panels as render_panels draws them, each point colored by its class labels[p][i] (kNoLabel:
// the usual ink).
ddpm::io::Image class_panels(const std::vector<ddpm::io::Panel>& panels,
                             const std::vector<std::vector<int>>& labels, int columns) {
  const ddpm::io::PlotStyle style;
  std::vector<ddpm::io::Panel> frames = panels;
  for (ddpm::io::Panel& frame : frames) frame.points.resize(0, 2);
  const ddpm::io::PanelLayout layout = ddpm::io::panel_layout(frames, columns, style);
  ddpm::io::Canvas canvas(layout.width(), layout.height());
  canvas.draw_image(ddpm::io::render_panels(frames, columns, style), 0, 0);
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const std::array<int, 2> origin = layout.plot_origin(static_cast<ddpm::Index>(p));
    const ddpm::Batch<double>& x = panels[p].points;
    for (ddpm::Index i = 0; i < x.rows(); ++i) {
      if (!panels[p].frame.contains(x(i, 0), x(i, 1))) continue;
      const int label = labels[p][static_cast<std::size_t>(i)];
      const ddpm::io::Rgb color =
          label < 0 ? ddpm::io::colors::ink : kClassColors[static_cast<std::size_t>(label) % 8];
      const std::array<double, 2> u = panels[p].frame.to_pixel(x(i, 0), x(i, 1), layout.plot_size);
      canvas.disk(origin[0] + u[0], origin[1] + u[1], style.dot_radius, color, style.dot_alpha);
    }
  }
  return std::move(canvas).image();
}

// "ddpm samples", with the class and guidance when there are.
std::string describe(const SampleArgs& args) {
  std::string text = args.sampler_name() + (args.exact ? " exact" : "") + " samples";
  if (args.label >= 0) text += ", class " + std::to_string(args.label);
  if (args.guidance != 0.0) text += ", w=" + ddpm::detail::to_text(args.guidance);
  if (!args.classifier.empty()) text += ", s=" + ddpm::detail::to_text(args.classifier_scale);
  return text;
}

// Writes samples.csv (with a label column when labeled), samples.npy (float32, n x 2),
// samples.png (colored by class when labeled) and compare.png (data beside samples; without the
// data file only the samples).
void write_samples(const fs::path& out, const ddpm::Batch<Real>& samples,
                   const std::vector<int>& labels, const Points& points, const std::string& title,
                   std::uint64_t seed) {
  if (!ddpm_examples::writes_files()) return;  // rank 0 writes for all MPI ranks
  const bool labeled = std::any_of(labels.begin(), labels.end(), [](int y) { return y >= 0; });
  if (labeled) {
    ddpm::Batch<Real> rows(samples.rows(), 3);
    rows.leftCols(2) = samples;
    for (ddpm::Index i = 0; i < samples.rows(); ++i) {
      rows(i, 2) = static_cast<Real>(labels[static_cast<std::size_t>(i)]);
    }
    ddpm::io::write_csv(out / "samples.csv", rows, {"x", "y", "label"});
    ddpm::io::write_png(
        out / "samples.png",
        class_panels({ddpm::io::make_panel(samples, title, "", points.frame())}, {labels}, 1));
  } else {
    ddpm::io::write_csv(out / "samples.csv", samples, {"x", "y"});
    ddpm::io::scatter_png(out / "samples.png", samples, title, points.frame());
  }
  ddpm::io::write_npy(out / "samples.npy", samples);
  std::vector<ddpm::io::Panel> panels;
  if (points.has_data()) {
    panels.push_back(ddpm::io::make_panel(points.draw(samples.rows(), seed + 1000003), "data", "",
                                          points.frame()));
  }
  panels.push_back(ddpm::io::make_panel(samples, title, "", points.frame()));
  ddpm::io::write_png(out / "compare.png", ddpm::io::render_panels(panels, 2));
}

// train --conditional and --label-dropout.
struct ConditionalArgs {
  bool conditional = false;
  double label_dropout = 0.1;
};

int train(Run run, const std::string& data_file, const ddpm_examples::TrainArgs& args,
          const ConditionalArgs& conditional, const SampleArgs& sample_args,
          const ddpm_examples::CommonOptions& common) {
  const fs::path out(common.out);
  // Before the data are read or anything is trained.
  ddpm_examples::check_input_files({{"--resume", args.resume, ddpm_examples::kCheckpointFile},
                                    {"--init-from", args.init_from, ddpm_examples::kCheckpointFile},
                                    {"--data", data_file, "an existing CSV or .npy file"}});
  ddpm_examples::check_output_folder(out);
  const Points points = data_file.empty() ? Points{run.data, {}} : Points::from_file(data_file);
  run.data = points.config;
  run.model.output_dim = run.diffusion.learned_variance() ? 4 : 2;
  if (conditional.conditional) {
    ddpm::detail::require(!points.from_file(), "--conditional with --data", data_file,
                          "a built-in --dataset with classes (a points file has no labels)");
    ddpm::data::require_labeled(points.toy(), "--conditional with --dataset");
    run.model.num_classes = points.classes();
  }
  Model model(run.model);
  ddpm_examples::check_output_folder(
      out, ddpm_examples::checkpoint_bytes_estimate(model.parameter_count()));
  if (!args.init_from.empty()) ddpm_examples::init_from(args.init_from, run, model);
  ddpm::train::Trainer<Real, Model> trainer(
      model, run.diffusion.make<Real>(),
      ddpm_examples::trainer_options(args, common.seed,
                                     conditional.conditional ? conditional.label_dropout : 0.0),
      ddpm_examples::world());
  if (!args.resume.empty()) ddpm_examples::resume(args.resume, run, trainer);
  const std::uint64_t seed = trainer.seed();  // a resumed run continues its own data stream
  const std::string label =
      "train " + (points.from_file() ? fs::path(run.data.path).filename().string() : run.data.name);
  const ddpm::Batch<Real> standardized = points.units().to_model<Real>(points.rows);
  const ddpm::data::ToyDataset toy = points.from_file() ? ddpm::data::ToyDataset{} : points.toy();
  try {
    if (points.from_file()) {
      ddpm_examples::run_training(trainer, ddpm::data::ResampledRows<Real>{&standardized, seed + 1},
                                  args, run, out, 50, true, label);
    } else if (conditional.conditional) {
      // The unconditional run's points (same seed and indices), with their classes.
      ddpm_examples::run_training(
          trainer,
          [&](std::int64_t step, ddpm::Index n, ddpm::Batch<Real>& x, std::vector<int>& y) {
            x = ddpm::data::sample_toy2d_labeled<Real>(toy, n, seed + 1, y, step * n);
          },
          args, run, out, 50, true, label);
    } else {
      ddpm_examples::run_training(
          trainer,
          [&](std::int64_t step, ddpm::Index n, ddpm::Batch<Real>& x) {
            x = ddpm::data::sample_toy2d<Real>(toy, n, seed + 1, step * n);
          },
          args, run, out, 50, true, label);
    }
  } catch (const ddpm::NonFiniteError& e) {
    std::cerr << "\n" << e.what() << "\n";
    return 2;
  }
  // The forward process on data: x_0 and x_t at the strip's noise levels.
  const ddpm::Batch<double> x0 = points.units().to_model<double>(points.draw(3000, seed + 7));
  ddpm::Batch<double> noise(x0.rows(), 2);
  ddpm::CounterRng(seed).fill_normal(noise, ddpm::stream::user, 0, 0);
  std::vector<ddpm::io::Panel> forward = ddpm::viz::forward_strip(
      ddpm::GaussianDiffusion<double>(run.diffusion.schedule.make(),
                                      {.output = run.diffusion.options.output}),
      x0, noise, points.frame());
  for (ddpm::io::Panel& panel : forward) panel.points = points.units().to_data(panel.points);
  if (ddpm_examples::writes_files()) {
    ddpm::io::write_png(out / "forward.png", ddpm::io::render_strip(forward));
  }

  const auto ema = trainer.ema_weights();  // sample with the averaged weights
  Sampler sampler = make_sampler(model, run, sample_args);
  const std::vector<int> labels = labels_for(sampler, sample_args, sample_args.n);
  const ddpm::Batch<Real> samples =
      draw_samples(sampler, run, points, sample_args, labels, common.seed + 2, out / "reverse.png");
  write_samples(out, samples, labels, points, describe(sample_args), common.seed);
  const ddpm::Index shown = std::min<ddpm::Index>(2000, samples.rows());
  const double mmd = ddpm::eval::mmd2_rbf(samples.topRows(shown).cast<double>(),
                                          points.draw(2000, common.seed + 99));
  std::printf(
      "trained %d steps; MMD^2 of %d samples vs %s: %.2e (see `eval` "
      "for floors)\n",
      args.steps, static_cast<int>(shown), points.from_file() ? "the data" : "fresh data", mmd);
  std::printf(
      "wrote model.ckpt, loss.csv, loss.png, forward.png, reverse.png, "
      "samples.csv, "
      "samples.npy, samples.png, compare.png in %s\n",
      out.string().c_str());
  return 0;
}

// The checkpoint's data (its file read again when there is one; without it only compare.png's
// data are missing).
Points open_points(const Run& run) {
  try {
    return Points::open(run.data);
  } catch (const ddpm::FormatError& e) {
    std::cerr << "ddpm-toy2d: note: compare.png shows no data: " << e.what() << "\n";
    return Points{run.data, {}};
  }
}

// What sample and eval check before they load or sample anything: their input files and --out.
void check_files(const SampleArgs& args, const ddpm_examples::CommonOptions& common) {
  ddpm_examples::check_input_files(
      {{"--checkpoint", args.checkpoint, ddpm_examples::kCheckpointFile},
       {"--weights", args.weights.path, "an existing .safetensors file"},
       {"--classifier", args.classifier == "exact" ? std::string() : args.classifier,
        "an existing train-classifier checkpoint file, or exact"},
       {"--x-init", args.x_init.path, "an existing .npy file of N x 2 points"}});
  ddpm_examples::check_output_folder(common.out);
}

int sample(const SampleArgs& args, const ddpm_examples::CommonOptions& common,
           const Run& from_options) {
  check_files(args, common);
  auto [run, model] =
      ddpm_examples::load_model<Model, ddpm::nn::MlpConfig>(args, args.weights, from_options);
  const Points points = open_points(run);
  Sampler sampler = make_sampler(model, run, args);
  std::optional<ddpm::Batch<Real>> x_init;
  ddpm::Index n = args.n;
  if (args.x_init.given()) {
    x_init = ddpm_examples::read_x_init<Real>(args.x_init.path, {2}, "N x 2 points");
    n = ddpm_examples::samples_of(args.x_init, args.n, x_init->rows());
  }
  const ddpm::Batch<Real>* x_T = x_init ? &*x_init : nullptr;
  const std::vector<int> labels = labels_for(sampler, args, n);
  // Checked before the first sampling: each weight as --guidance would be.
  for (const double w : args.guidance_sweep) {
    SampleArgs one = args;
    one.guidance = w;
    (void)labels_for(sampler, one, 1);
  }
  const fs::path out(common.out);
  fs::create_directories(out);
  const ddpm::Batch<Real> samples =
      draw_samples(sampler, run, points, args, labels, common.seed + 2, out / "reverse.png", x_T);
  write_samples(out, samples, labels, points, describe(args), common.seed);
  std::string written = "samples.csv, samples.npy, samples.png, compare.png, reverse.png";
  if (!args.guidance_sweep.empty()) {
    // The same labels and noise at each weight: guidance.png, one panel per weight.
    std::vector<ddpm::io::Panel> panels;
    for (const double w : args.guidance_sweep) {
      SampleArgs one = args;
      one.guidance = w;
      panels.push_back(ddpm::io::make_panel(
          draw_samples(sampler, run, points, one, labels, common.seed + 2, {}, x_T),
          "w = " + ddpm::detail::to_text(w), "", points.frame()));
    }
    const std::vector<std::vector<int>> colors(panels.size(), labels);
    if (ddpm_examples::writes_files()) {
      ddpm::io::write_png(out / "guidance.png",
                          class_panels(panels, colors, static_cast<int>(panels.size())));
    }
    written += ", guidance.png";
  }
  std::printf("wrote %s in %s\n", written.c_str(), out.string().c_str());
  return 0;
}

// eval of a model with classes (or with a classifier): per class, n samples of that class, their
// MMD^2 to the class's data (and its data-vs-data floor) and, for 8gaussians, the mean exact
// posterior p(component = class | x) of the samples; classes.png shows them colored.
ddpm::io::JsonObject eval_classes(Sampler& sampler, const Run& run, const Points& points,
                                  const SampleArgs& args, std::uint64_t seed, const fs::path& out) {
  const ddpm::data::ToyDataset toy = points.toy();
  const std::optional<ddpm::GaussianMixture> mixture = ddpm::data::toy_mixture(toy);
  std::vector<int> classes;
  for (int k = 0; k < points.classes(); ++k) {
    if (args.label < 0 || args.label == k) classes.push_back(k);
  }
  ddpm::io::JsonObject per_class;
  std::vector<double> mmds, shares;
  ddpm::io::Panel all =
      ddpm::io::make_panel(ddpm::Batch<double>(0, 2), describe(args), "", points.frame());
  std::vector<int> all_labels;
  const ddpm::Index shown = std::min<ddpm::Index>(args.n, 500);
  for (const int k : classes) {
    SampleArgs one = args;
    one.label = k;
    const std::vector<int> labels = labels_for(sampler, one, args.n);
    const ddpm::Batch<double> x =
        draw_samples(sampler, run, points, one, labels, seed + 2, {}).cast<double>();
    const ddpm::Batch<double> data = ddpm::data::sample_toy2d_class(toy, k, args.n, seed + 424242);
    const ddpm::Batch<double> twice = ddpm::data::sample_toy2d_class(toy, k, 2 * args.n, seed + 10);
    ddpm::io::JsonObject c;
    mmds.push_back(ddpm::eval::mmd2_rbf(x, data));
    c.add("mmd2", mmds.back())
        .add("mmd2_floor", ddpm::eval::mmd2_rbf(twice.topRows(args.n), twice.bottomRows(args.n)));
    std::fprintf(stderr, "class %d: MMD^2 %.2e", k, mmds.back());
    if (mixture) {
      shares.push_back(ddpm::data::mixture_posterior(*mixture, x).col(k).mean());
      c.add("posterior_share", shares.back());
      std::fprintf(stderr, ", mean p(component %d | x) %.4f", k, shares.back());
    }
    std::fprintf(stderr, "\n");
    per_class.add(std::to_string(k), c);
    all.points.conservativeResize(all.points.rows() + shown, 2);
    all.points.bottomRows(shown) = x.topRows(shown);
    all_labels.insert(all_labels.end(), static_cast<std::size_t>(shown), k);
  }
  ddpm::io::write_png(out / "classes.png", class_panels({all}, {all_labels}, 1));
  const auto mean = [](const std::vector<double>& v) {
    double sum = 0.0;
    for (const double x : v) sum += x;
    return sum / static_cast<double>(v.size());
  };
  ddpm::io::JsonObject json;
  json.add("classes", static_cast<ddpm::Index>(classes.size()))
      .add("n_per_class", args.n)
      .add("mean_mmd2", mean(mmds));
  if (mixture) json.add("mean_posterior_share", mean(shares));
  json.add("per_class", per_class);
  return json;
}

int eval(const SampleArgs& args, const ddpm_examples::CommonOptions& common, int bound_n,
         double ode_tolerance) {
  check_files(args, common);
  auto [run, model] = ddpm_examples::load_trained<Model, ddpm::nn::MlpConfig>(args);
  const Points points = Points::open(run.data);
  Sampler sampler = make_sampler(model, run, args);
  const fs::path out(common.out);
  fs::create_directories(out);
  const std::vector<int> labels = labels_for(sampler, args, args.n);
  const ddpm::Batch<Real> samples =
      draw_samples(sampler, run, points, args, labels, common.seed + 2, {});
  // Built-in data: fresh points of the distribution. --data: the file's points are the reference
  // (min(n, N) of them), the floor compares two disjoint halves of the file, and the bound is
  // computed on (training) points of the file.
  const ddpm::Batch<double> data = points.draw(args.n, common.seed + 424242);
  ddpm::io::write_csv(out / "data.csv", data, {"x", "y"});
  ddpm::io::write_csv(out / "samples.csv", samples, {"x", "y"});
  const ddpm::eval::SampleQuality quality =
      ddpm::eval::sample_quality(samples.cast<double>(), data);
  ddpm::eval::SampleQuality floor;
  ddpm::Index floor_n = args.n;
  if (points.from_file()) {
    const std::vector<ddpm::Index> order =
        ddpm::data::shuffled_rows(points.rows.rows(), common.seed + 10);
    floor_n = std::min<ddpm::Index>(args.n, points.rows.rows() / 2);
    floor = ddpm::eval::sample_quality(ddpm::data::pick_rows(points.rows, order, 0, floor_n),
                                       ddpm::data::pick_rows(points.rows, order, floor_n, floor_n));
  } else {
    floor = ddpm::eval::metric_floor(
        [&](ddpm::Index n, std::uint64_t seed) { return points.draw(n, seed); }, args.n, {},
        common.seed + 10, common.seed + 11);
  }
  // The variational bound on held-out data, continuous decoder: nats per dimension.
  const ddpm::GaussianDiffusion<Real> diffusion = run.diffusion.make<Real>();
  const ddpm::Batch<Real> held_out =
      points.units().to_model<Real>(points.draw(bound_n, common.seed + 31337));
  ddpm::io::ProgressBar progress(diffusion.num_timesteps(), "variational bound");
  // Of the unconditional prediction (a conditional model's no-label branch).
  const auto bound_of = [&](auto& denoiser) {
    return diffusion.variational_bound(denoiser, held_out, ddpm::CounterRng(common.seed + 5), 0,
                                       [&](int done, int) { progress.update(done); });
  };
  const ddpm::VariationalBound<Real> bound =
      sampler.exact ? bound_of(*sampler.exact) : bound_of(model);
  progress.finish();
  // The probability-flow ODE NLL of the same points (exact divergence, N(0, I) prior).
  ddpm::OdeLikelihoodOptions ode_options;
  ode_options.rtol = ode_options.atol = ode_tolerance;
  const auto ode_of = [&](auto& denoiser) {
    return ddpm::ode_likelihood(denoiser, diffusion, held_out, ddpm::CounterRng(common.seed + 6),
                                ode_options);
  };
  const ddpm::OdeLikelihood ode = sampler.exact ? ode_of(*sampler.exact) : ode_of(model);
  // Standardization changes densities by the Jacobian: in the user's units the bound (and its
  // decoder term) grows by the mean log standard deviation per dimension.
  const double log_jacobian =
      points.from_file() ? 0.5 * (std::log(run.data.scale[0]) + std::log(run.data.scale[1])) : 0.0;
  ddpm::io::JsonObject json;
  json.add("dataset", run.data.name);
  if (points.from_file()) {
    json.add("data", run.data.path)
        .add("data_n", data.rows())
        .add("standardization",
             ddpm::io::JsonObject().add("mean", run.data.mean).add("std", run.data.scale));
  }
  ddpm::io::JsonObject floor_json;
  floor_json.add("mmd2", floor.mmd2).add("energy_distance", floor.energy);
  floor_json.add("sliced_w1", floor.sliced_w1);
  if (points.from_file()) floor_json.add("n", floor_n);
  json.add("sampler", args.describe(run.diffusion.schedule.num_timesteps))
      .add("eta", args.spec().eta_value())
      .add("n", args.n)
      .add("weights", args.exact         ? "exact"
                      : args.raw_weights ? "raw"
                                         : "ema")
      .add("label", args.label)
      .add("guidance", args.guidance)
      .add("classifier", args.classifier)
      .add("classifier_scale", args.classifier_scale)
      .add("mmd2", quality.mmd2)
      .add("energy_distance", quality.energy)
      .add("sliced_w1", quality.sliced_w1)
      .add("floor", floor_json)
      .add("nll_bound",
           ddpm::io::JsonObject()
               .add("unit", bound.unit)
               .add("decoder", "continuous Gaussian")
               .add("n", held_out.rows())
               .add("total", bound.total.cast<double>().mean() + log_jacobian)
               .add("prior_L_T", bound.prior.cast<double>().mean())
               .add("decoder_L_0", bound.terms.col(0).cast<double>().mean() + log_jacobian))
      .add("nll_ode", ddpm::io::JsonObject()
                          .add("unit", "nats/dim")
                          .add("n", held_out.rows())
                          .add("total", ode.mean_nll_per_dim() + log_jacobian)
                          .add("nfe", ode.mean_evaluations())
                          .add("tolerance", ode_tolerance)
                          .add("divergence", "exact")
                          .add("prior", "N(0, I)"));
  if (points.classes() > 0 && (sampler.classes > 0 || sampler.classifier_classes > 0)) {
    json.add("conditional", eval_classes(sampler, run, points, args, common.seed, out));
  }
  ddpm::io::write_file_atomically(out / "metrics.json", json.text());
  std::cout << json.text();
  return 0;
}

// ---- the noisy-point classifier ----------------------------------------------------------------

int train_classifier(ddpm::data::ToyDataset dataset,
                     const ddpm::train::PointClassifierRunOptions& options,
                     const ddpm_examples::CommonOptions& common) {
  ddpm::data::require_labeled(dataset, "--dataset");
  const int classes = ddpm::data::toy_classes(dataset);
  const fs::path out(common.out);
  ddpm::nn::MlpConfig net;  // the classifier's size, for the space its checkpoint needs
  net.input_dim = 2;
  net.output_dim = classes;
  net.width = options.width;
  net.depth = options.depth;
  net.embedding_dim = options.embedding_dim;
  ddpm_examples::check_output_folder(out, ddpm_examples::checkpoint_bytes_estimate(
                                              PointClassifier(net).network().parameter_count()));
  std::vector<int> test_labels;
  const ddpm::Batch<Real> test =
      ddpm::data::sample_toy2d_labeled<Real>(dataset, 5000, common.seed + 999, test_labels);
  ddpm::io::ProgressBar progress(options.steps, "train-classifier", std::cerr, {.unit = "step"});
  auto run = ddpm::train::train_point_classifier_run<Real>(
      [&](std::int64_t step, ddpm::Index n, ddpm::Batch<Real>& x, std::vector<int>& labels) {
        x = ddpm::data::sample_toy2d_labeled<Real>(dataset, n, common.seed + 1, labels, step * n);
      },
      test, test_labels, 2, classes, options, ddpm_examples::loss_progress(progress));
  progress.finish();
  ddpm::train::save_point_classifier(out / "classifier.ckpt", run.classifier, options.schedule,
                                     std::string(ddpm::to_string(dataset)));
  std::printf("wrote %s; accuracy on 5000 fresh points:",
              (out / "classifier.ckpt").string().c_str());
  ddpm_examples::print_accuracy(run.accuracy);
  return 0;
}

// ---- command line -----------------------------------------------------------------------------

void add_toy_sample_options(CLI::App& app, SampleArgs& args, bool with_checkpoint) {
  args.n = 5000;
  ddpm_examples::add_sample_options(app, args, with_checkpoint);
  app.add_option("--n", args.n, "number of samples (eval: also per class)")
      ->check(ddpm_examples::integer_range(2, 10000000))
      ->capture_default_str();
  if (!with_checkpoint) return;
  ddpm_examples::add_sample_variance_option(app, args);
  ddpm_examples::add_guidance_options(
      app, args,
      "classifier.ckpt from train-classifier (classifier guidance of the model's unconditional "
      "prediction), or 'exact': the exact p(component | x_t) of 8gaussians");
  app.add_flag("--exact", args.exact,
               "8gaussians: sample with the exact denoiser of the mixture (the ideal model) "
               "through the same sampler and guidance, instead of the network");
}

}  // namespace

int main(int argc, char** argv) {
  // MPI under mpirun, else one process.
  auto distributed = ddpm_examples::start_distributed(argc, argv, "ddpm-toy2d");
  if (!distributed) return 1;
  CLI::App app{
      "ddpm-toy2d: train a denoising diffusion model on a 2D toy distribution (optionally "
      "conditioned on the class), sample from it (with classifier-free or classifier "
      "guidance), evaluate the samples, and train the noisy classifier of guidance."};
  app.require_subcommand(1);
  ddpm_examples::CommonOptions train_common, sample_common, eval_common;
  train_common.out = sample_common.out = eval_common.out = "out/toy2d";

  // The run's defaults: ToyMLP (width 256, depth 3, embedding 64), linear T = 1000, swissroll.
  Run run;
  run.model = ddpm::nn::toy_mlp_config();
  ddpm::data::ToyDataset dataset = ddpm::data::ToyDataset::swissroll;
  std::string data_file;
  ddpm_examples::TrainArgs train_args;
  train_args.warmup = 100;
  train_args.decay = ddpm::optim::LrDecay::cosine;
  SampleArgs train_sampling, sample_args, eval_args;
  int bound_n = 1000;

  CLI::App* train_cmd = app.add_subcommand("train",
                                           "train a model; writes model.ckpt, loss.csv/png, "
                                           "forward/reverse strips and samples");
  CLI::Option* dataset_option =
      ddpm_examples::add_choice(*train_cmd, "--dataset", dataset, "toy distribution");
  ddpm_examples::add_diffusion_options(*train_cmd, run.diffusion);
  ddpm_examples::add_model_options(*train_cmd, run.model);
  train_cmd
      ->add_option("--data", data_file,
                   "train on your own 2-D points instead of --dataset: a CSV file with columns x "
                   "and y (or exactly two columns) or an N x 2 .npy array; each axis is "
                   "standardized, and samples come back in your units (see README.md)")
      ->check(CLI::ExistingFile)
      ->excludes(dataset_option);
  ConditionalArgs conditional;
  train_cmd->add_flag("--conditional", conditional.conditional,
                      "condition on the class (8gaussians: the component 0..7; moons, circles: "
                      "0 outer, 1 inner) for classifier-free guidance at sampling");
  train_cmd
      ->add_option("--label-dropout", conditional.label_dropout,
                   "probability a label is dropped in training (classifier-free guidance)")
      ->check(ddpm_examples::range(0.0, 1.0))
      ->capture_default_str();
  ddpm_examples::add_train_options(*train_cmd, train_args);
  ddpm_examples::add_offset_noise_option(*train_cmd, train_args, "per sample");
  add_toy_sample_options(*train_cmd, train_sampling, false);
  ddpm_examples::add_common_options(*train_cmd, train_common);

  CLI::App* sample_cmd =
      app.add_subcommand("sample", "sample from a trained model; writes samples.csv and pictures");
  add_toy_sample_options(*sample_cmd, sample_args, true);
  sample_cmd
      ->add_option("--guidance-sweep", sample_args.guidance_sweep,
                   "also draw the same labels and noise at each of these weights w into "
                   "guidance.png, e.g. 0,1,3,10")
      ->delimiter(',')
      ->check(ddpm_examples::finite());
  ddpm_examples::add_x_init_option(*sample_cmd, sample_args.x_init, sample_cmd->get_option("--n"),
                                   "N x 2 points");
  ddpm_examples::add_weights_option(*sample_cmd, sample_args.weights, "torch_models.ToyMlp");
  // The run of a --weights file without __metadata__: ToyMLP and train's diffusion by default.
  Run weights_run;
  weights_run.model = ddpm::nn::toy_mlp_config();
  weights_run.data.name = kNoData;
  ddpm_examples::add_settings_options(*sample_cmd, sample_args.weights, [&] {
    ddpm_examples::add_diffusion_options(*sample_cmd, weights_run.diffusion);
    ddpm_examples::add_model_options(*sample_cmd, weights_run.model);
    sample_cmd
        ->add_option("--classes", weights_run.model.num_classes,
                     "classes of a conditional network (0: unconditional)")
        ->check(ddpm_examples::integer_range(0, 1000000))
        ->capture_default_str();
  });
  ddpm_examples::add_common_options(*sample_cmd, sample_common);

  ddpm_examples::ExportArgs export_args;
  CLI::App* export_cmd = ddpm_examples::add_export_command(app, export_args, "torch_models.ToyMlp");

  CLI::App* eval_cmd =
      app.add_subcommand("eval",
                         "measure a trained model: metrics.json (MMD^2, energy distance, "
                         "sliced W1, their data-vs-data floors, NLL bound; for a conditional "
                         "model or with --classifier per class: MMD^2 to the class's data and, "
                         "8gaussians, the exact posterior share of the class) and data.csv");
  add_toy_sample_options(*eval_cmd, eval_args, true);
  eval_cmd->add_option("--bound-n", bound_n, "held-out points for the NLL bound and ODE NLL")
      ->check(ddpm_examples::integer_range(1, 1000000))
      ->capture_default_str();
  double ode_tolerance = 1e-3;  // 1e-5 costs ~12x the NFE on a trained MLP for 2e-4 nats/dim
  eval_cmd
      ->add_option("--ode-tolerance", ode_tolerance,
                   "rtol = atol of the probability-flow ODE NLL (Dormand-Prince)")
      ->check(ddpm_examples::positive())
      ->capture_default_str();
  ddpm_examples::add_common_options(*eval_cmd, eval_common);

  ddpm_examples::CommonOptions classifier_common;
  classifier_common.out = "out/toy2d";
  ddpm::data::ToyDataset classifier_dataset = ddpm::data::ToyDataset::eight_gaussians;
  ddpm::train::PointClassifierRunOptions classifier_args;
  ddpm::nn::MlpConfig classifier_net;
  classifier_net.width = classifier_args.width;
  classifier_net.depth = classifier_args.depth;
  classifier_net.embedding_dim = classifier_args.embedding_dim;
  CLI::App* classifier_cmd = app.add_subcommand(
      "train-classifier",
      "train the noisy-point classifier p(class | x_t, t) of classifier guidance (an MLP); "
      "writes classifier.ckpt");
  ddpm_examples::add_choice(*classifier_cmd, "--dataset", classifier_dataset,
                            "labeled toy distribution (8gaussians, moons or circles)");
  ddpm_examples::add_schedule_options(*classifier_cmd, classifier_args.schedule);
  ddpm_examples::add_model_options(*classifier_cmd, classifier_net);
  ddpm_examples::add_classifier_train_options(*classifier_cmd, classifier_args);
  ddpm_examples::add_common_options(*classifier_cmd, classifier_common);

  ddpm_examples::InfoCommand info;
  info.add(app);

  CLI11_PARSE(app, argc, argv);
  try {
    ddpm_examples::refuse_ranks_unless(*train_cmd || *sample_cmd,
                                       "ddpm-toy2d " + app.get_subcommands().front()->get_name());
    if (*train_cmd) {
      run.data.name = std::string(ddpm::to_string(dataset));
      return train(run, data_file, train_args, conditional, train_sampling, train_common);
    }
    if (*sample_cmd) {
      weights_run.model.output_dim = weights_run.diffusion.learned_variance() ? 4 : 2;
      return sample(sample_args, sample_common, weights_run);
    }
    if (*export_cmd) {
      ddpm_examples::check_input_files(
          {{"--checkpoint", export_args.checkpoint, ddpm_examples::kCheckpointFile}});
      ddpm_examples::check_output_file(export_args.out);
      return ddpm_examples::export_weights<Model, ddpm::nn::MlpConfig>(export_args);
    }
    if (*eval_cmd) {
      return eval(eval_args, eval_common, bound_n, ode_tolerance);
    }
    if (*classifier_cmd) {
      classifier_args.width = classifier_net.width;
      classifier_args.depth = classifier_net.depth;
      classifier_args.embedding_dim = classifier_net.embedding_dim;
      classifier_args.seed = classifier_common.seed;
      return train_classifier(classifier_dataset, classifier_args, classifier_common);
    }
    return info.run();
  } catch (const std::exception& e) {
    return distributed->fail(std::string("ddpm-toy2d: ") + e.what(), 1);
  }
}
