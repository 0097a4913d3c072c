// SPDX-License-Identifier: MIT
// ddpm-toy2d: train a DDPM on a 2D toy distribution (or your own 2-D points),
// sample from it, and measure how good the samples are. The project's main
// demo; see README.md for the options.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "../common_options.hpp"
#include "../common_train.hpp"
#include "ddpm/data/points.hpp"
#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/io/csv.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/npy.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/viz/strips.hpp"

namespace {

namespace fs = std::filesystem;
using Real = float;
using Model = ddpm::nn::Mlp<Real>;
using Run = ddpm::train::MlpRun;

using SampleArgs = ddpm_examples::SampleArgs;

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
  [[nodiscard]] ddpm::data::Standardization units() const { return {config.mean, config.scale}; }
  [[nodiscard]] ddpm::io::Frame frame() const {
    const std::vector<double>& f = config.frame;
    return f.size() == 4 ? ddpm::io::Frame{f[0], f[1], f[2], f[3]} : ddpm::io::Frame::square(4.5);
  }
  [[nodiscard]] ddpm::data::ToyDataset toy() const {
    return ddpm::parse_enum<ddpm::data::ToyDataset>(config.name);
  }
  // n points: fresh samples of the distribution, or min(n, N) rows of the file in an order fixed by
  // `seed`.
  [[nodiscard]] ddpm::Batch<double> draw(ddpm::Index n, std::uint64_t seed) const {
    if (!from_file()) return ddpm::data::sample_toy2d<double>(toy(), n, seed);
    return ddpm::data::pick_rows(rows, ddpm::data::shuffled_rows(rows.rows(), seed), 0,
                                 std::min(n, rows.rows()));
  }
};

// Samples n points with the model's weights as they are, in the user's units; writes a
// reverse-process strip.
ddpm::Batch<Real> draw_samples(Model& model, const Run& run, const Points& points,
                               const SampleArgs& args, std::uint64_t seed,
                               const fs::path& strip_path) {
  const ddpm::GaussianDiffusion<Real> diffusion =
      run.diffusion.make_respaced<Real>(args.steps(run.diffusion.schedule.num_timesteps));
  ddpm::viz::ReverseStripRecorder<Real> strip(diffusion.schedule(), points.frame());
  ddpm::io::ProgressBar progress(diffusion.num_timesteps(), args.sampler_name() + " sampling");
  const auto on_step = [&](const ddpm::SamplerProgress<Real>& p) {
    progress.update(p.done);
    strip(p);
  };
  const ddpm::Batch<Real> samples = ddpm::sample(args.sampler, diffusion, args.eta, model, args.n,
                                                 2, ddpm::CounterRng(seed), 0, on_step);
  progress.finish();
  if (!strip_path.empty()) {
    std::vector<ddpm::io::Panel> panels = strip.panels();
    for (ddpm::io::Panel& panel : panels) panel.points = points.units().to_data(panel.points);
    ddpm::io::write_png(strip_path, ddpm::io::render_strip(panels));
  }
  return points.units().to_data(samples);
}

// Writes samples.csv, samples.npy (float32, n x 2), samples.png and compare.png (data beside
// samples; without the data file only the samples).
void write_samples(const fs::path& out, const ddpm::Batch<Real>& samples, const Points& points,
                   const std::string& title, std::uint64_t seed) {
  ddpm::io::write_csv(out / "samples.csv", samples, {"x", "y"});
  ddpm::io::write_npy(out / "samples.npy", samples);
  ddpm::io::scatter_png(out / "samples.png", samples, title, points.frame());
  std::vector<ddpm::io::Panel> panels;
  if (!points.from_file() || points.rows.rows() > 0) {
    panels.push_back(ddpm::io::make_panel(points.draw(samples.rows(), seed + 1000003), "data", "",
                                          points.frame()));
  }
  panels.push_back(ddpm::io::make_panel(samples, title, "", points.frame()));
  ddpm::io::write_png(out / "compare.png", ddpm::io::render_panels(panels, 2));
}

int train(Run run, const std::string& data_file, const ddpm_examples::TrainArgs& args,
          const SampleArgs& sample_args, const ddpm_examples::CommonOptions& common) {
  const fs::path out(common.out);
  fs::create_directories(out);
  const Points points = data_file.empty() ? Points{run.data, {}} : Points::from_file(data_file);
  run.data = points.config;
  run.model.output_dim = run.diffusion.learned_variance() ? 4 : 2;
  Model model(run.model);
  if (!args.init_from.empty()) ddpm_examples::init_from(args.init_from, run, model);
  ddpm::train::Trainer<Real, Model> trainer(model, run.diffusion.make<Real>(),
                                            ddpm_examples::trainer_options(args, common.seed));
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
      ddpm::GaussianDiffusion<double>(run.diffusion.schedule.make()), x0, noise, points.frame());
  for (ddpm::io::Panel& panel : forward) panel.points = points.units().to_data(panel.points);
  ddpm::io::write_png(out / "forward.png", ddpm::io::render_strip(forward));

  const auto ema = trainer.ema_weights();  // sample with the averaged weights
  const ddpm::Batch<Real> samples =
      draw_samples(model, run, points, sample_args, common.seed + 2, out / "reverse.png");
  write_samples(out, samples, points, sample_args.sampler_name() + " samples", common.seed);
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

int sample(const SampleArgs& args, const ddpm_examples::CommonOptions& common) {
  auto [run, model] = ddpm_examples::load_trained<Model, ddpm::nn::MlpConfig>(args);
  Points points{run.data, {}};
  try {  // sampling needs only the checkpoint; the data file only adds
         // compare.png's data
    points = Points::open(run.data);
  } catch (const ddpm::FormatError& e) {
    std::cerr << "ddpm-toy2d: note: compare.png shows no data: " << e.what() << "\n";
  }
  const fs::path out(common.out);
  fs::create_directories(out);
  const ddpm::Batch<Real> samples =
      draw_samples(model, run, points, args, common.seed + 2, out / "reverse.png");
  write_samples(out, samples, points, args.sampler_name() + " samples", common.seed);
  std::printf(
      "wrote samples.csv, samples.npy, samples.png, compare.png, "
      "reverse.png in %s\n",
      out.string().c_str());
  return 0;
}

int eval(const SampleArgs& args, const ddpm_examples::CommonOptions& common, int bound_n) {
  auto [run, model] = ddpm_examples::load_trained<Model, ddpm::nn::MlpConfig>(args);
  const Points points = Points::open(run.data);
  const fs::path out(common.out);
  fs::create_directories(out);
  const ddpm::Batch<Real> samples = draw_samples(model, run, points, args, common.seed + 2, {});
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
  const ddpm::VariationalBound<Real> bound =
      diffusion.variational_bound(model, held_out, ddpm::CounterRng(common.seed + 5), 0,
                                  [&](int done, int) { progress.update(done); });
  progress.finish();
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
  json.add("sampler", args.sampler_name())
      .add("sample_steps", args.steps(run.diffusion.schedule.num_timesteps))
      .add("eta", args.eta)
      .add("n", args.n)
      .add("weights", args.raw_weights ? "raw" : "ema")
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
               .add("decoder_L_0", bound.terms.col(0).cast<double>().mean() + log_jacobian));
  ddpm::io::write_file_atomically(out / "metrics.json", json.text());
  std::cout << json.text();
  return 0;
}

void add_toy_sample_options(CLI::App& app, SampleArgs& args, bool with_checkpoint) {
  args.n = 5000;
  ddpm_examples::add_sample_options(app, args, with_checkpoint);
  app.add_option("--n", args.n, "number of samples")
      ->check(CLI::Range(2, 10000000))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ddpm-toy2d: train a denoising diffusion model on a 2D toy "
      "distribution, sample from "
      "it, and evaluate the samples."};
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
  ddpm_examples::add_train_options(*train_cmd, train_args);
  add_toy_sample_options(*train_cmd, train_sampling, false);
  ddpm_examples::add_common_options(*train_cmd, train_common);

  CLI::App* sample_cmd =
      app.add_subcommand("sample", "sample from a trained model; writes samples.csv and pictures");
  add_toy_sample_options(*sample_cmd, sample_args, true);
  ddpm_examples::add_common_options(*sample_cmd, sample_common);

  CLI::App* eval_cmd =
      app.add_subcommand("eval",
                         "measure a trained model: metrics.json (MMD^2, energy distance, "
                         "sliced W1, their data-vs-data floors, NLL bound) and data.csv");
  add_toy_sample_options(*eval_cmd, eval_args, true);
  eval_cmd->add_option("--bound-n", bound_n, "held-out points for the NLL bound")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  ddpm_examples::add_common_options(*eval_cmd, eval_common);

  ddpm_examples::InfoCommand info;
  info.add(app);

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train_cmd) {
      run.data.name = std::string(ddpm::to_string(dataset));
      return train(run, data_file, train_args, train_sampling, train_common);
    }
    if (*sample_cmd) {
      return sample(sample_args, sample_common);
    }
    if (*eval_cmd) {
      return eval(eval_args, eval_common, bound_n);
    }
    return info.run();
  } catch (const std::exception& e) {
    std::cerr << "ddpm-toy2d: " << e.what() << "\n";
    return 1;
  }
}
