// SPDX-License-Identifier: MIT
// ddpm-toy2d: train a DDPM on a 2D toy distribution, sample from it, and measure how good the
// samples are. The project's main demo; see README.md for a walk-through of the options.
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "../common_options.hpp"
#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/io/csv.hpp"
#include "ddpm/io/npy.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/train/trainer.hpp"
#include "ddpm/viz/strips.hpp"

namespace {

namespace fs = std::filesystem;
using Real = float;
using Model = ddpm::nn::Mlp<Real>;

// Everything that defines a model and its diffusion; stored in the checkpoint's metadata so that
// `sample` and `eval` rebuild exactly what `train` trained.
struct ModelSpec {
  std::string dataset = "swissroll";
  std::string schedule = "linear";
  int num_timesteps = 1000;
  std::string output = "eps";
  std::string variance = "fixed-small";
  std::string loss = "simple";
  int width = 256;
  int depth = 3;
  int embedding = 64;
  // train --data: the user's file (absolute path), its row count, the per-axis standardization
  // (the model sees (x - mean) / scale) and the picture frame fitted to the data.
  std::string data;
  std::int64_t data_rows = 0;
  std::array<double, 2> mean{0.0, 0.0};
  std::array<double, 2> scale{1.0, 1.0};
  ddpm::io::Frame frame = ddpm::io::Frame::square(4.5);

  [[nodiscard]] bool from_file() const { return !data.empty(); }
  [[nodiscard]] std::string label() const {
    return from_file() ? fs::path(data).filename().string() : dataset;
  }

  [[nodiscard]] ddpm::nn::MlpConfig mlp(std::uint64_t seed) const {
    ddpm::nn::MlpConfig config = ddpm::nn::toy_mlp_config(seed);
    config.width = width;
    config.depth = depth;
    config.embedding_dim = embedding;
    config.output_dim = diffusion_options().variance == ddpm::VarianceKind::learned ||
                                diffusion_options().variance == ddpm::VarianceKind::learned_range
                            ? 4
                            : 2;
    return config;
  }
  [[nodiscard]] std::string architecture() const {
    return "mlp in=2 out=" + std::to_string(mlp(0).output_dim) + " width=" + std::to_string(width) +
           " depth=" + std::to_string(depth) + " emb=" + std::to_string(embedding) + " act=silu";
  }
  [[nodiscard]] ddpm::NoiseSchedule noise_schedule() const {
    if (schedule == "cosine") return ddpm::NoiseSchedule::cosine(num_timesteps);
    if (schedule == "linear") return ddpm::NoiseSchedule::linear(num_timesteps);
    throw ddpm::InvalidArgument("--schedule", schedule, "linear or cosine");
  }
  [[nodiscard]] ddpm::DiffusionOptions diffusion_options() const {
    return {.output = ddpm::parse_enum<ddpm::ModelOutput>(output),
            .variance = ddpm::parse_enum<ddpm::VarianceKind>(variance),
            .loss = ddpm::parse_enum<ddpm::LossKind>(loss)};
  }
  [[nodiscard]] ddpm::data::ToyDataset toy() const {
    return ddpm::data::parse_toy_dataset(dataset);
  }

  void store(ddpm::train::Checkpoint& c) const {
    c.set("toy2d.dataset", dataset);
    c.set("toy2d.schedule", schedule);
    c.set("toy2d.T", std::to_string(num_timesteps));
    c.set("toy2d.output", output);
    c.set("toy2d.variance", variance);
    c.set("toy2d.loss", loss);
    c.set("toy2d.width", std::to_string(width));
    c.set("toy2d.depth", std::to_string(depth));
    c.set("toy2d.embedding", std::to_string(embedding));
    if (from_file()) {
      c.set("toy2d.data", data);
      c.set("toy2d.data.rows", std::to_string(data_rows));
      c.set("toy2d.data.mean", numbers_text({mean[0], mean[1]}));
      c.set("toy2d.data.std", numbers_text({scale[0], scale[1]}));
      c.set("toy2d.frame", numbers_text({frame.x_min, frame.x_max, frame.y_min, frame.y_max}));
    }
  }
  // Doubles as comma-separated shortest round-trip text, so the metadata restores them exactly.
  static std::string numbers_text(const std::vector<double>& values) {
    std::string text;
    for (const double v : values) {
      char buffer[64];
      if (!text.empty()) text.push_back(',');
      text.append(buffer, std::to_chars(buffer, buffer + sizeof buffer, v).ptr);
    }
    return text;
  }
  static std::vector<double> parse_numbers(const ddpm::train::Checkpoint& c, const std::string& key,
                                           std::size_t count) {
    const std::string& text = c.get(key);
    std::vector<double> values;
    const char* p = text.data();
    const char* end = p + text.size();
    while (p < end) {
      double v = 0;
      const std::from_chars_result r = std::from_chars(p, end, v);
      if (r.ec != std::errc{} || !std::isfinite(v)) break;
      values.push_back(v);
      p = r.ptr;
      if (p < end && *p == ',') ++p;
    }
    if (p != end || values.size() != count) {
      throw ddpm::FormatError("ddpm: checkpoint metadata '" + key + "' = '" + text + "' is not " +
                              std::to_string(count) + " comma-separated numbers");
    }
    return values;
  }

  static ModelSpec load(const ddpm::train::Checkpoint& c) {
    ModelSpec spec;
    spec.dataset = c.get("toy2d.dataset");
    spec.schedule = c.get("toy2d.schedule");
    spec.num_timesteps = std::stoi(c.get("toy2d.T"));
    spec.output = c.get("toy2d.output");
    spec.variance = c.get("toy2d.variance");
    spec.loss = c.get("toy2d.loss");
    spec.width = std::stoi(c.get("toy2d.width"));
    spec.depth = std::stoi(c.get("toy2d.depth"));
    spec.embedding = std::stoi(c.get("toy2d.embedding"));
    if (c.has("toy2d.data")) {
      spec.data = c.get("toy2d.data");
      spec.data_rows = std::stoll(c.get("toy2d.data.rows"));
      const std::vector<double> m = parse_numbers(c, "toy2d.data.mean", 2);
      const std::vector<double> s = parse_numbers(c, "toy2d.data.std", 2);
      const std::vector<double> f = parse_numbers(c, "toy2d.frame", 4);
      spec.mean = {m[0], m[1]};
      spec.scale = {s[0], s[1]};
      spec.frame = {f[0], f[1], f[2], f[3]};
    }
    return spec;
  }
};

struct TrainArgs {
  ModelSpec spec;
  int steps = 15000;
  int batch = 1024;
  double lr = 1e-3;
  int warmup = 100;
  std::string decay = "cosine";
  double grad_clip = 1.0;
  double ema = 0.999;
  std::string timesteps = "uniform";
  std::string resume;
  int checkpoint_every = 1000;
  std::string data_file;  // --data
};

struct SampleArgs {
  std::string checkpoint;
  std::string sampler = "ddpm";
  int sample_steps = 0;  // 0: all T for ddpm, 50 for ddim
  double eta = 0.0;
  int n = 5000;
  bool raw_weights = false;
};

struct Common : ddpm_examples::CommonOptions {
  Common() { out = "out/toy2d"; }
};
using ddpm_examples::add_common_options;
using ddpm_examples::set_threads;

// The data set of `spec` as a training data source: batch `step` is samples step*n .. step*n+n-1.
struct ToyData {
  ddpm::data::ToyDataset dataset;
  std::uint64_t seed;
  void operator()(std::int64_t step, ddpm::Index n, ddpm::Batch<Real>& out) const {
    out = ddpm::data::sample_toy2d<Real>(dataset, n, seed, step * n);
  }
};

// The pictures' frame: [-4.5, 4.5]^2 for built-in data, fitted to the user's data for --data.

// The user's 2-D points of train --data, in their own units: a CSV file with a header (columns x
// and y, or exactly two columns) or, for a name ending in .npy, an N x 2 NumPy array.
ddpm::Batch<double> load_points(const std::string& path) {
  const fs::path file(path);
  std::string extension = file.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const std::string what = "ddpm: --data file '" + path + "': ";
  ddpm::Batch<double> points;
  if (extension == ".npy") {
    points = ddpm::io::read_npy_matrix(file);
    if (points.cols() != 2) {
      throw ddpm::FormatError(what + "shape (" + std::to_string(points.rows()) + ", " +
                              std::to_string(points.cols()) +
                              "); expected (N, 2), one 2-D point per row");
    }
    for (ddpm::Index i = 0; i < points.rows(); ++i) {
      if (!points.row(i).allFinite()) {
        throw ddpm::FormatError(what + "row " + std::to_string(i) + " is not finite (NaN/inf)");
      }
    }
  } else {
    const ddpm::io::CsvTable table = ddpm::io::read_csv(file);
    const auto& names = table.columns;
    const bool has_xy = std::find(names.begin(), names.end(), "x") != names.end() &&
                        std::find(names.begin(), names.end(), "y") != names.end();
    if (!has_xy && names.size() != 2) {
      std::string found;
      for (const std::string& name : names) found += " " + name;
      throw ddpm::FormatError(
          what + "expected columns named x and y, or exactly two columns; found" + found);
    }
    const ddpm::Index cx = has_xy ? table.column_index("x") : 0;
    const ddpm::Index cy = has_xy ? table.column_index("y") : 1;
    points.resize(table.values.rows(), 2);
    points.col(0) = table.values.col(cx);
    points.col(1) = table.values.col(cy);
  }
  if (points.rows() < 4 || points.rows() > (ddpm::Index{1} << 31)) {
    throw ddpm::FormatError(what + "has " + std::to_string(points.rows()) +
                            " points; between 4 and 2^31 are needed");
  }
  return points;
}

// Fits what train --data stores: the per-axis mean and (population) standard deviation the model's
// inputs are standardized with, and a picture frame fixed for the run: the data's bounding box with
// a margin of 10% of its width (height) on each side.
void fit_data(const ddpm::Batch<double>& points, ModelSpec& spec) {
  std::array<double, 2> low{}, high{};
  for (int j = 0; j < 2; ++j) {
    const Eigen::ArrayXd column = points.col(j).array();
    spec.mean[j] = column.mean();
    spec.scale[j] = std::sqrt((column - spec.mean[j]).square().mean());
    low[j] = column.minCoeff();
    high[j] = column.maxCoeff();
    if (!(spec.scale[j] > 0.0) || !std::isfinite(spec.scale[j]) || !(high[j] > low[j])) {
      throw ddpm::FormatError("ddpm: --data file '" + spec.data + "': " + (j == 0 ? "x" : "y") +
                              " has the same value in every row (or overflows); it cannot be "
                              "standardized");
    }
  }
  const double mx = 0.1 * (high[0] - low[0]), my = 0.1 * (high[1] - low[1]);
  spec.frame = {low[0] - mx, high[0] + mx, low[1] - my, high[1] + my};
  spec.data_rows = points.rows();
}

// Points in the model's units: (x - mean) / scale per axis.
template <class T>
ddpm::Batch<T> to_model_units(const ddpm::Batch<double>& points, const ModelSpec& spec) {
  ddpm::Batch<T> out(points.rows(), 2);
  for (ddpm::Index i = 0; i < points.rows(); ++i) {
    for (int j = 0; j < 2; ++j) {
      out(i, j) = static_cast<T>((points(i, j) - spec.mean[j]) / spec.scale[j]);
    }
  }
  return out;
}

// Model outputs in the user's units: x * scale + mean per axis (unchanged for built-in data).
template <class T>
ddpm::Batch<T> to_user_units(const ddpm::Batch<T>& x, const ModelSpec& spec) {
  if (!spec.from_file()) return x;
  ddpm::Batch<T> out(x.rows(), x.cols());
  for (ddpm::Index i = 0; i < x.rows(); ++i) {
    for (int j = 0; j < 2; ++j) {
      out(i, j) = static_cast<T>(static_cast<double>(x(i, j)) * spec.scale[j] + spec.mean[j]);
    }
  }
  return out;
}

// Strip panels drawn from model-unit points, mapped to the user's units.
std::vector<ddpm::io::Panel> to_user_units(std::vector<ddpm::io::Panel> panels,
                                           const ModelSpec& spec) {
  for (ddpm::io::Panel& panel : panels) panel.points = to_user_units(panel.points, spec);
  return panels;
}

// The rows 0..n-1 in an order fixed by `seed` (Fisher-Yates on the counter RNG).
std::vector<ddpm::Index> shuffled_rows(ddpm::Index n, std::uint64_t seed) {
  std::vector<ddpm::Index> rows(static_cast<std::size_t>(n));
  for (ddpm::Index i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = i;
  const ddpm::CounterRng rng(seed);
  for (ddpm::Index i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::size_t>(rng.uniform_int(
        ddpm::stream::data, static_cast<std::uint32_t>(i), 0, static_cast<std::uint64_t>(i + 1)));
    std::swap(rows[static_cast<std::size_t>(i)], rows[j]);
  }
  return rows;
}

// Where the data's points come from: the built-in distribution, or the user's file (--data).
class DataPoints {
 public:
  explicit DataPoints(const ModelSpec& spec) : spec_(spec) {
    if (!spec.from_file()) return;
    points_ = load_points(spec.data);
    if (spec.data_rows != 0 && points_.rows() != spec.data_rows) {
      std::cerr << "ddpm-toy2d: warning: " << spec.data << " now has " << points_.rows()
                << " points; the model was trained on " << spec.data_rows << "\n";
    }
  }
  DataPoints(const ModelSpec& spec, ddpm::Batch<double> points)
      : spec_(spec), points_(std::move(points)) {}

  // n points in the user's units: fresh samples of a built-in distribution, or min(n, N) rows of
  // the file in an order fixed by `seed`.
  [[nodiscard]] ddpm::Batch<double> draw(ddpm::Index n, std::uint64_t seed) const {
    if (!spec_.from_file()) return ddpm::data::sample_toy2d<double>(spec_.toy(), n, seed);
    return rows(shuffled_rows(points_.rows(), seed), 0, std::min(n, points_.rows()));
  }
  // Two disjoint sets of min(n, N/2) rows of the file, in an order fixed by `seed`.
  [[nodiscard]] std::array<ddpm::Batch<double>, 2> halves(ddpm::Index n, std::uint64_t seed) const {
    const std::vector<ddpm::Index> order = shuffled_rows(points_.rows(), seed);
    const ddpm::Index half = std::min(n, points_.rows() / 2);
    return {rows(order, 0, half), rows(order, half, half)};
  }
  [[nodiscard]] const ddpm::Batch<double>& points() const { return points_; }

 private:
  [[nodiscard]] ddpm::Batch<double> rows(const std::vector<ddpm::Index>& order, ddpm::Index first,
                                         ddpm::Index count) const {
    ddpm::Batch<double> out(count, 2);
    for (ddpm::Index i = 0; i < count; ++i) {
      out.row(i) = points_.row(order[static_cast<std::size_t>(first + i)]);
    }
    return out;
  }
  const ModelSpec& spec_;
  ddpm::Batch<double> points_;
};

// Training batches from the user's points (standardized): row i of batch `step` is row
// uniform_int(N) of (seed, stream data, i, step), drawn with replacement, so a resumed run draws
// the same batches.
struct FileData {
  const ddpm::Batch<Real>* points;
  std::uint64_t seed;
  void operator()(std::int64_t step, ddpm::Index n, ddpm::Batch<Real>& out) const {
    out.resize(n, 2);
    const ddpm::CounterRng rng(seed);
    const auto rows = static_cast<std::uint64_t>(points->rows());
    for (ddpm::Index i = 0; i < n; ++i) {
      const std::uint64_t r = rng.uniform_int(ddpm::stream::data, static_cast<std::uint32_t>(i),
                                              static_cast<std::uint32_t>(step), rows);
      out.row(i) = points->row(static_cast<ddpm::Index>(r));
    }
  }
};

// Samples n points with the model's weights as they are, in the user's units; writes a
// reverse-process strip.
ddpm::Batch<Real> draw_samples(Model& model, const ModelSpec& spec, const SampleArgs& args,
                               std::uint64_t seed, const fs::path& strip_path) {
  const ddpm::NoiseSchedule full = spec.noise_schedule();
  const bool ddim = args.sampler == "ddim";
  const int steps = args.sample_steps > 0 ? args.sample_steps : ddim ? 50 : spec.num_timesteps;
  ddpm::detail::require(steps <= spec.num_timesteps, "--sample-steps", steps,
                        "1.." + std::to_string(spec.num_timesteps));
  const ddpm::NoiseSchedule schedule =
      steps == spec.num_timesteps ? full : full.respaced("evenly " + std::to_string(steps));
  const ddpm::GaussianDiffusion<Real> diffusion(schedule, spec.diffusion_options());
  ddpm::viz::ReverseStripRecorder<Real> strip(schedule, spec.frame);
  ddpm::io::ProgressBar progress(schedule.size(), args.sampler + " sampling");
  const auto on_step = [&](const ddpm::SamplerProgress<Real>& p) {
    progress.update(p.done);
    strip(p);
  };
  const ddpm::CounterRng rng(seed);
  model.set_training(false);  // inference: keep no activations for a backward pass
  ddpm::Batch<Real> samples;
  if (ddim) {
    ddpm::DdimSampler<Real> sampler(diffusion, args.eta);
    samples = sampler.sample(model, args.n, 2, rng, 0, on_step);
  } else {
    ddpm::AncestralSampler<Real> sampler(diffusion);
    samples = sampler.sample(model, args.n, 2, rng, 0, on_step);
  }
  progress.finish();
  model.set_training(true);
  if (!strip_path.empty()) {
    ddpm::io::write_png(strip_path, ddpm::io::render_strip(to_user_units(strip.panels(), spec)));
  }
  return to_user_units(samples, spec);
}

// Writes samples.csv, samples.npy (float32, n x 2), samples.png and compare.png (data beside
// samples); with `data` null the data are loaded here (the user's file, or fresh points of the
// built-in distribution).
void write_samples(const fs::path& out, const ddpm::Batch<Real>& samples, const ModelSpec& spec,
                   const std::string& title, std::uint64_t seed, const DataPoints* data) {
  ddpm::io::write_csv(out / "samples.csv", samples, {"x", "y"});
  ddpm::io::write_npy(out / "samples.npy", samples);
  const ddpm::io::Frame frame = spec.frame;
  ddpm::io::scatter_png(out / "samples.png", samples, title, frame);
  std::vector<ddpm::io::Panel> panels;
  try {
    const ddpm::Batch<double> points = data != nullptr
                                           ? data->draw(samples.rows(), seed + 1000003)
                                           : DataPoints(spec).draw(samples.rows(), seed + 1000003);
    panels.push_back(ddpm::io::make_panel(points, "data", "", frame));
  } catch (const ddpm::FormatError& e) {  // sampling needs only the checkpoint, not the data file
    std::cerr << "ddpm-toy2d: note: compare.png shows no data: " << e.what() << "\n";
  }
  panels.push_back(ddpm::io::make_panel(samples, title, "", frame));
  ddpm::io::write_png(out / "compare.png", ddpm::io::render_panels(panels, 2));
}

// The forward process on data: x_0 and x_t at the strip's noise levels.
void write_forward_strip(const fs::path& path, const ModelSpec& spec, const DataPoints& data,
                         std::uint64_t seed) {
  const ddpm::GaussianDiffusion<double> diffusion(spec.noise_schedule());
  const ddpm::Batch<double> x0 = spec.from_file()
                                     ? to_model_units<double>(data.draw(3000, seed + 7), spec)
                                     : data.draw(3000, seed + 7);
  ddpm::Batch<double> noise(x0.rows(), 2);
  ddpm::CounterRng(seed).fill_normal(noise, ddpm::stream::user, 0, 0);
  ddpm::io::write_png(path, ddpm::io::render_strip(to_user_units(
                                ddpm::viz::forward_strip(diffusion, x0, noise, spec.frame), spec)));
}

ddpm::train::TrainerOptions trainer_options(const TrainArgs& a, std::uint64_t seed) {
  ddpm::optim::LrDecay decay = ddpm::optim::LrDecay::constant;
  if (a.decay == "cosine") decay = ddpm::optim::LrDecay::cosine;
  if (a.decay == "linear") decay = ddpm::optim::LrDecay::linear;
  return {.batch_size = a.batch,
          .steps = a.steps,
          .adam = {.learning_rate = a.lr},
          .warmup_steps = std::min(a.warmup, a.steps - 1),
          .decay = decay,
          .final_lr = decay == ddpm::optim::LrDecay::constant ? 0.0 : a.lr * 0.01,
          .grad_clip = a.grad_clip,
          .ema_decay = a.ema,
          .timesteps = ddpm::train::parse_timestep_sampling(a.timesteps),
          .seed = seed};
}

int train(const TrainArgs& args, const SampleArgs& sample_args, const Common& common) {
  const fs::path out(common.out);
  fs::create_directories(out);
  ModelSpec spec = args.spec;
  ddpm::Batch<double> user_points;  // --data, in the user's units
  if (!args.data_file.empty()) {
    spec.data = fs::absolute(args.data_file).lexically_normal().string();
    spec.dataset = "file";
    user_points = load_points(spec.data);
    fit_data(user_points, spec);
    std::printf("data: %lld points from %s; standardized with mean (%g, %g) and std (%g, %g)\n",
                static_cast<long long>(user_points.rows()), spec.data.c_str(), spec.mean[0],
                spec.mean[1], spec.scale[0], spec.scale[1]);
  }
  const DataPoints points(spec, user_points);
  const ddpm::Batch<Real> standardized =
      spec.from_file() ? to_model_units<Real>(user_points, spec) : ddpm::Batch<Real>();
  Model model(spec.mlp(common.seed));
  const ddpm::GaussianDiffusion<Real> diffusion(spec.noise_schedule(), spec.diffusion_options());
  ddpm::train::Trainer<Real, Model> trainer(model, diffusion, trainer_options(args, common.seed));
  std::uint64_t seed = common.seed;
  if (!args.resume.empty()) {
    const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(args.resume);
    // The data first: a different file (or none) would make the run silently different.
    const bool same_data =
        c.has("toy2d.data") == spec.from_file() &&
        (!spec.from_file() ||
         (c.get("toy2d.data.mean") == ModelSpec::numbers_text({spec.mean[0], spec.mean[1]}) &&
          c.get("toy2d.data.std") == ModelSpec::numbers_text({spec.scale[0], spec.scale[1]})));
    ddpm::detail::require(same_data, "--data", spec.from_file() ? spec.data : "(not given)", [&] {
      return c.has("toy2d.data")
                 ? "the points the checkpoint was trained on (" + c.get("toy2d.data") + ", mean " +
                       c.get("toy2d.data.mean") + ")"
                 : std::string("none: the checkpoint was trained on --dataset");
    });
    trainer.restore(c, spec.architecture());
    seed = trainer.seed();  // the data stream continues with the run's own seed
    std::printf("resumed from %s at step %lld\n", args.resume.c_str(),
                static_cast<long long>(trainer.step_count()));
  }
  const std::int64_t first = trainer.step_count();
  const ddpm::train::Trainer<Real, Model>::RunOptions run{.checkpoint = out / "model.ckpt",
                                                          .checkpoint_every = args.checkpoint_every,
                                                          .architecture = spec.architecture(),
                                                          .loss_csv = out / "loss.csv",
                                                          .label = "train " + spec.label()};
  const auto annotate = [&](ddpm::train::Checkpoint& c) { spec.store(c); };
  std::vector<double> losses;
  try {
    if (spec.from_file()) {
      losses = trainer.run(FileData{&standardized, seed + 1}, run, annotate);
    } else {
      losses = trainer.run(ToyData{spec.toy(), seed + 1}, run, annotate);
    }
  } catch (const ddpm::NonFiniteError& e) {
    std::cerr << "\n" << e.what() << "\n";
    return 2;
  }
  ddpm::io::write_png(out / "loss.png",
                      ddpm::io::render_curve(losses, {.log_y = true,
                                                      .smoothing = 50,
                                                      .title = "training loss (" + spec.loss + ")",
                                                      .x_label = "step",
                                                      .x_start = static_cast<double>(first + 1)}));
  write_forward_strip(out / "forward.png", spec, points, seed);
  const auto ema = trainer.ema_weights();  // sample with the averaged weights
  const ddpm::Batch<Real> samples =
      draw_samples(model, spec, sample_args, common.seed + 2, out / "reverse.png");
  write_samples(out, samples, spec, sample_args.sampler + " samples", common.seed, &points);
  const ddpm::Batch<double> fresh = points.draw(2000, common.seed + 99);
  const double mmd = ddpm::eval::mmd2_rbf(
      samples.topRows(std::min<ddpm::Index>(2000, samples.rows())).cast<double>(), fresh);
  std::printf("trained %d steps; MMD^2 of %d samples vs %s: %.2e (see `eval` for floors)\n",
              args.steps, static_cast<int>(std::min<ddpm::Index>(2000, samples.rows())),
              spec.from_file() ? "the data" : "fresh data", mmd);
  std::printf(
      "wrote model.ckpt, loss.csv, loss.png, forward.png, reverse.png, samples.csv, "
      "samples.npy, samples.png, compare.png in %s\n",
      out.string().c_str());
  return 0;
}

// Loads a checkpoint written by `train`, with the EMA weights in the model unless raw is asked.
Model load_model(const std::string& path, bool raw_weights, ModelSpec& spec) {
  ddpm::detail::require(!path.empty(), "--checkpoint", "(none)", "a model.ckpt written by train");
  const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(path);
  spec = ModelSpec::load(c);
  Model model(spec.mlp(0));
  const bool has_ema = c.contains("ema.shadow");
  const std::string prefix = has_ema && !raw_weights ? "" : "model.";
  if (has_ema && !raw_weights) {
    c.take<Real>("ema.shadow", model.parameter_values());
  } else {
    for (const ddpm::ParameterBlock<Real>& block : model.parameters()) {
      c.take<Real>(prefix + block.name, block.value);
    }
  }
  return model;
}

int sample(const SampleArgs& args, const Common& common) {
  ModelSpec spec;
  Model model = load_model(args.checkpoint, args.raw_weights, spec);
  const fs::path out(common.out);
  fs::create_directories(out);
  const ddpm::Batch<Real> samples =
      draw_samples(model, spec, args, common.seed + 2, out / "reverse.png");
  write_samples(out, samples, spec, args.sampler + " samples", common.seed, nullptr);
  std::printf("wrote samples.csv, samples.npy, samples.png, compare.png, reverse.png in %s\n",
              out.string().c_str());
  return 0;
}

// A JSON string literal of `text` (quotes, backslashes and control characters escaped).
std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 32) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(c));
      out.append(buffer);
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.6g", v);
  return buffer;
}

int eval(const SampleArgs& args, const Common& common, int bound_n) {
  ModelSpec spec;
  Model model = load_model(args.checkpoint, args.raw_weights, spec);
  const fs::path out(common.out);
  fs::create_directories(out);
  const ddpm::Batch<Real> samples = draw_samples(model, spec, args, common.seed + 2, {});
  // Built-in data: fresh points of the distribution. --data: the file's points are the reference
  // (min(n, N) of them), the floor compares two disjoint halves of the file, and the bound is
  // computed on (training) points of the file.
  const DataPoints points(spec);
  const ddpm::Batch<double> data = points.draw(args.n, common.seed + 424242);
  ddpm::io::write_csv(out / "data.csv", data, {"x", "y"});
  ddpm::io::write_csv(out / "samples.csv", samples, {"x", "y"});
  const ddpm::eval::SampleQuality quality =
      ddpm::eval::sample_quality(samples.cast<double>(), data);
  ddpm::eval::SampleQuality floor;
  ddpm::Index floor_n = args.n;
  if (spec.from_file()) {
    const std::array<ddpm::Batch<double>, 2> halves = points.halves(args.n, common.seed + 10);
    floor = ddpm::eval::sample_quality(halves[0], halves[1]);
    floor_n = halves[0].rows();
  } else {
    floor = ddpm::eval::metric_floor(
        [&](ddpm::Index n, std::uint64_t seed) { return points.draw(n, seed); }, args.n, {},
        common.seed + 10, common.seed + 11);
  }
  // The variational bound on held-out data, continuous decoder: nats per dimension.
  const ddpm::GaussianDiffusion<Real> diffusion(spec.noise_schedule(), spec.diffusion_options());
  const ddpm::Batch<Real> held_out =
      spec.from_file() ? to_model_units<Real>(points.draw(bound_n, common.seed + 31337), spec)
                       : ddpm::data::sample_toy2d<Real>(spec.toy(), bound_n, common.seed + 31337);
  ddpm::io::ProgressBar progress(diffusion.num_timesteps(), "variational bound");
  const ddpm::VariationalBound<Real> bound =
      diffusion.variational_bound(model, held_out, ddpm::CounterRng(common.seed + 5), 0,
                                  [&](int done, int) { progress.update(done); });
  progress.finish();
  // Standardization changes densities by the Jacobian: in the user's units the bound (and its
  // decoder term) grows by the mean log standard deviation per dimension.
  const double log_jacobian = 0.5 * (std::log(spec.scale[0]) + std::log(spec.scale[1]));
  const double nll = bound.total.cast<double>().mean() + log_jacobian;
  const double prior = bound.prior.cast<double>().mean();
  const double decoder = bound.terms.col(0).cast<double>().mean() + log_jacobian;
  std::ostringstream json;
  json << "{\n"
       << "  \"dataset\": \"" << spec.dataset << "\",\n";
  if (spec.from_file()) {
    json << "  \"data\": " << json_string(spec.data) << ",\n"
         << "  \"data_n\": " << data.rows() << ",\n"
         << "  \"standardization\": {\"mean\": [" << json_number(spec.mean[0]) << ", "
         << json_number(spec.mean[1]) << "], \"std\": [" << json_number(spec.scale[0]) << ", "
         << json_number(spec.scale[1]) << "]},\n";
  }
  json << "  \"sampler\": \"" << args.sampler << "\",\n"
       << "  \"sample_steps\": "
       << (args.sample_steps > 0    ? args.sample_steps
           : args.sampler == "ddim" ? 50
                                    : spec.num_timesteps)
       << ",\n"
       << "  \"eta\": " << json_number(args.eta) << ",\n"
       << "  \"n\": " << args.n << ",\n"
       << "  \"weights\": \"" << (args.raw_weights ? "raw" : "ema") << "\",\n"
       << "  \"mmd2\": " << json_number(quality.mmd2) << ",\n"
       << "  \"energy_distance\": " << json_number(quality.energy) << ",\n"
       << "  \"sliced_w1\": " << json_number(quality.sliced_w1) << ",\n"
       << "  \"floor\": {\"mmd2\": " << json_number(floor.mmd2)
       << ", \"energy_distance\": " << json_number(floor.energy)
       << ", \"sliced_w1\": " << json_number(floor.sliced_w1)
       << (spec.from_file() ? ", \"n\": " + std::to_string(floor_n) : std::string()) << "},\n"
       << "  \"nll_bound\": {\"unit\": \"" << bound.unit
       << "\", \"decoder\": \"continuous Gaussian\", "
       << "\"n\": " << held_out.rows() << ", \"total\": " << json_number(nll)
       << ", \"prior_L_T\": " << json_number(prior) << ", \"decoder_L_0\": " << json_number(decoder)
       << "}\n"
       << "}\n";
  ddpm::io::write_file_atomically(out / "metrics.json", json.str());
  std::cout << json.str();
  return 0;
}

void add_model_options(CLI::App& app, ModelSpec& spec) {
  std::vector<std::string> names;
  for (const std::string_view name : ddpm::data::toy_dataset_names()) names.emplace_back(name);
  app.add_option("--dataset", spec.dataset, "toy distribution")
      ->check(CLI::IsMember(names))
      ->capture_default_str();
  app.add_option("--schedule", spec.schedule, "noise schedule: linear or cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  app.add_option("--T", spec.num_timesteps, "diffusion steps")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--output", spec.output, "what the network predicts: eps, x0 or v")
      ->check(CLI::IsMember({"eps", "x0", "v"}))
      ->capture_default_str();
  app.add_option("--variance", spec.variance, "fixed-small, fixed-large or learned-range")
      ->check(CLI::IsMember({"fixed-small", "fixed-large", "learned-range"}))
      ->capture_default_str();
  app.add_option("--loss", spec.loss, "simple, hybrid (learned variance) or kl")
      ->check(CLI::IsMember({"simple", "hybrid", "kl"}))
      ->capture_default_str();
  app.add_option("--width", spec.width, "hidden units per layer")
      ->check(CLI::Range(1, 8192))
      ->capture_default_str();
  app.add_option("--depth", spec.depth, "hidden layers")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--embedding", spec.embedding, "time-embedding size")
      ->check(CLI::Range(2, 4096))
      ->capture_default_str();
}

void add_sample_options(CLI::App& app, SampleArgs& args, bool with_checkpoint) {
  if (with_checkpoint) {
    app.add_option("--checkpoint", args.checkpoint, "model.ckpt written by train")->required();
    app.add_flag("--raw-weights", args.raw_weights,
                 "sample with the trained weights, not their EMA");
  }
  app.add_option("--sampler", args.sampler, "ddpm (ancestral) or ddim")
      ->check(CLI::IsMember({"ddpm", "ddim"}))
      ->capture_default_str();
  app.add_option("--sample-steps", args.sample_steps,
                 "sampling steps (default: T for ddpm, 50 for ddim)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--eta", args.eta, "DDIM eta: 0 deterministic, 1 ancestral-like")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--n", args.n, "number of samples")
      ->check(CLI::Range(2, 10000000))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ddpm-toy2d: train a denoising diffusion model on a 2D toy distribution, sample from "
      "it, and evaluate the samples."};
  app.require_subcommand(1);
  TrainArgs train_args;
  SampleArgs train_sampling, sample_args, eval_args;
  Common train_common, sample_common, eval_common;
  eval_args.sampler = "ddpm";
  int bound_n = 1000;

  CLI::App* train_cmd = app.add_subcommand("train",
                                           "train a model; writes model.ckpt, loss.csv/png, "
                                           "forward/reverse strips and samples");
  add_model_options(*train_cmd, train_args.spec);
  train_cmd
      ->add_option("--data", train_args.data_file,
                   "train on your own 2-D points instead of --dataset: a CSV file with a header "
                   "(columns x and y, or exactly two numeric columns) or, if the name ends in "
                   ".npy, an N x 2 float32/float64 NumPy array. Each axis is standardized (the "
                   "mean subtracted, divided by the standard deviation) for training; both are "
                   "stored in the checkpoint so samples come back in your units, and eval "
                   "compares them with the file's points. Pictures use the data's bounding box "
                   "plus a 10% margin")
      ->check(CLI::ExistingFile)
      ->excludes(train_cmd->get_option("--dataset"));
  train_cmd->add_option("--steps", train_args.steps, "optimizer steps")
      ->check(CLI::Range(1, 100000000))
      ->capture_default_str();
  train_cmd->add_option("--batch", train_args.batch, "batch size")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  train_cmd->add_option("--lr", train_args.lr, "Adam learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  train_cmd->add_option("--warmup", train_args.warmup, "learning-rate warm-up steps")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  train_cmd
      ->add_option("--decay", train_args.decay,
                   "learning-rate decay after warm-up: cosine, linear or constant")
      ->check(CLI::IsMember({"cosine", "linear", "constant"}))
      ->capture_default_str();
  train_cmd->add_option("--grad-clip", train_args.grad_clip, "global gradient-norm clip (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  train_cmd
      ->add_option("--ema", train_args.ema, "EMA decay of the weights used for sampling (0: off)")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  train_cmd
      ->add_option("--timesteps", train_args.timesteps, "timestep sampler: uniform or importance")
      ->check(CLI::IsMember({"uniform", "importance"}))
      ->capture_default_str();
  train_cmd->add_option("--resume", train_args.resume, "continue from this checkpoint");
  train_cmd
      ->add_option("--checkpoint-every", train_args.checkpoint_every,
                   "steps between checkpoints (0: only at the end)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_sample_options(*train_cmd, train_sampling, false);
  add_common_options(*train_cmd, train_common);

  CLI::App* sample_cmd =
      app.add_subcommand("sample", "sample from a trained model; writes samples.csv and pictures");
  add_sample_options(*sample_cmd, sample_args, true);
  add_common_options(*sample_cmd, sample_common);

  CLI::App* eval_cmd =
      app.add_subcommand("eval",
                         "measure a trained model: metrics.json (MMD^2, energy distance, "
                         "sliced W1, their data-vs-data floors, NLL bound) and data.csv");
  add_sample_options(*eval_cmd, eval_args, true);
  eval_cmd->add_option("--bound-n", bound_n, "held-out points for the NLL bound")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  add_common_options(*eval_cmd, eval_common);

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train_cmd) {
      set_threads(train_common.threads);
      return train(train_args, train_sampling, train_common);
    }
    if (*sample_cmd) {
      set_threads(sample_common.threads);
      return sample(sample_args, sample_common);
    }
    set_threads(eval_common.threads);
    return eval(eval_args, eval_common, bound_n);
  } catch (const std::exception& e) {
    std::cerr << "ddpm-toy2d: " << e.what() << "\n";
    return 1;
  }
}
