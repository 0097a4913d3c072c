// SPDX-License-Identifier: MIT
// ddpm-toy2d: train a DDPM on a 2D toy distribution, sample from it, and measure how good the
// samples are. The project's main demo; see README.md for a walk-through of the options.
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/io/csv.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/train/trainer.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

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
    return {.output = ddpm::parse_model_output(output),
            .variance = ddpm::parse_variance_kind(variance),
            .loss = ddpm::parse_loss_kind(loss)};
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
};

struct SampleArgs {
  std::string checkpoint;
  std::string sampler = "ddpm";
  int sample_steps = 0;  // 0: all T for ddpm, 50 for ddim
  double eta = 0.0;
  int n = 5000;
  bool raw_weights = false;
};

struct Common {
  std::uint64_t seed = 0;
  int threads = 0;
  std::string out = "out/toy2d";
};

void set_threads(int threads) {
  if (threads <= 0) return;
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
}

// The data set of `spec` as a training data source: batch `step` is samples step*n .. step*n+n-1.
struct ToyData {
  ddpm::data::ToyDataset dataset;
  std::uint64_t seed;
  void operator()(std::int64_t step, ddpm::Index n, ddpm::Batch<Real>& out) const {
    out = ddpm::data::sample_toy2d<Real>(dataset, n, seed, step * n);
  }
};

ddpm::io::Frame frame_for(const std::string&) { return ddpm::io::Frame::square(4.5); }

// Samples n points with the model's weights as they are; writes a reverse-process strip.
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
  std::vector<ddpm::io::Panel> strip;
  ddpm::io::ProgressBar progress(schedule.size(), args.sampler + " sampling");
  const int every = std::max(1, schedule.size() / 5);
  const auto on_step = [&](const ddpm::SamplerProgress<Real>& p) {
    progress.update(p.done);
    if (p.done == 1 || p.done % every == 0) {
      strip.push_back(ddpm::io::make_panel(
          p.x, "", "step " + std::to_string(p.done) + "/" + std::to_string(p.total),
          frame_for(spec.dataset)));
    }
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
  if (!strip_path.empty()) ddpm::io::write_png(strip_path, ddpm::io::render_strip(strip));
  return samples;
}

void write_samples(const fs::path& out, const ddpm::Batch<Real>& samples, const ModelSpec& spec,
                   const std::string& title, std::uint64_t seed) {
  ddpm::io::write_csv(out / "samples.csv", samples, {"x", "y"});
  const ddpm::io::Frame frame = frame_for(spec.dataset);
  ddpm::io::scatter_png(out / "samples.png", samples, title, frame);
  const ddpm::Batch<double> data =
      ddpm::data::sample_toy2d<double>(spec.toy(), samples.rows(), seed + 1000003);
  const std::vector<ddpm::io::Panel> panels = {ddpm::io::make_panel(data, "data", "", frame),
                                               ddpm::io::make_panel(samples, title, "", frame)};
  ddpm::io::write_png(out / "compare.png", ddpm::io::render_panels(panels, 2));
}

// The forward process on data: x_0 and x_t at a few t, one strip.
void write_forward_strip(const fs::path& path, const ModelSpec& spec, std::uint64_t seed) {
  const ddpm::NoiseSchedule schedule = spec.noise_schedule();
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const ddpm::Batch<double> x0 = ddpm::data::sample_toy2d<double>(spec.toy(), 3000, seed + 7);
  ddpm::Batch<double> noise(x0.rows(), 2), x_t;
  ddpm::CounterRng(seed).fill_normal(noise, ddpm::stream::user, 0, 0);
  std::vector<ddpm::io::Panel> strip = {
      ddpm::io::make_panel(x0, "", "x_0 (data)", frame_for(spec.dataset))};
  const int T = spec.num_timesteps;
  for (const double fraction : {0.05, 0.1, 0.25, 0.5, 1.0}) {
    const int t = std::min(T - 1, static_cast<int>(fraction * T));
    const std::vector<int> ts(static_cast<std::size_t>(x0.rows()), t);
    diffusion.q_sample(x0, ts, noise, x_t);
    strip.push_back(
        ddpm::io::make_panel(x_t, "", "t=" + std::to_string(t), frame_for(spec.dataset)));
  }
  ddpm::io::write_png(path, ddpm::io::render_strip(strip));
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
  const ModelSpec& spec = args.spec;
  Model model(spec.mlp(common.seed));
  const ddpm::GaussianDiffusion<Real> diffusion(spec.noise_schedule(), spec.diffusion_options());
  ddpm::train::Trainer<Real, Model> trainer(model, diffusion, trainer_options(args, common.seed));
  std::uint64_t seed = common.seed;
  if (!args.resume.empty()) {
    const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(args.resume);
    trainer.restore(c, spec.architecture());
    seed = trainer.seed();  // the data stream continues with the run's own seed
    std::printf("resumed from %s at step %lld\n", args.resume.c_str(),
                static_cast<long long>(trainer.step_count()));
  }
  const std::int64_t first = trainer.step_count();
  const ToyData data{spec.toy(), seed + 1};
  std::vector<double> losses;
  try {
    losses = trainer.run(data,
                         {.checkpoint = out / "model.ckpt",
                          .checkpoint_every = args.checkpoint_every,
                          .architecture = spec.architecture(),
                          .loss_csv = out / "loss.csv",
                          .label = "train " + spec.dataset},
                         [&](ddpm::train::Checkpoint& c) { spec.store(c); });
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
  write_forward_strip(out / "forward.png", spec, seed);
  const auto ema = trainer.ema_weights();  // sample with the averaged weights
  const ddpm::Batch<Real> samples =
      draw_samples(model, spec, sample_args, common.seed + 2, out / "reverse.png");
  write_samples(out, samples, spec, sample_args.sampler + " samples", common.seed);
  const ddpm::Batch<double> fresh =
      ddpm::data::sample_toy2d<double>(spec.toy(), 2000, common.seed + 99);
  const double mmd = ddpm::eval::mmd2_rbf(
      samples.topRows(std::min<ddpm::Index>(2000, samples.rows())).cast<double>(), fresh);
  std::printf("trained %d steps; MMD^2 of %d samples vs fresh data: %.2e (see `eval` for floors)\n",
              args.steps, static_cast<int>(std::min<ddpm::Index>(2000, samples.rows())), mmd);
  std::printf(
      "wrote model.ckpt, loss.csv, loss.png, forward.png, reverse.png, samples.csv, "
      "samples.png, compare.png in %s\n",
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
  write_samples(out, samples, spec, args.sampler + " samples", common.seed);
  std::printf("wrote samples.csv, samples.png, compare.png, reverse.png in %s\n",
              out.string().c_str());
  return 0;
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
  const auto toy = spec.toy();
  const ddpm::Batch<double> data =
      ddpm::data::sample_toy2d<double>(toy, args.n, common.seed + 424242);
  ddpm::io::write_csv(out / "data.csv", data, {"x", "y"});
  ddpm::io::write_csv(out / "samples.csv", samples, {"x", "y"});
  const ddpm::eval::SampleQuality quality =
      ddpm::eval::sample_quality(samples.cast<double>(), data);
  const ddpm::eval::SampleQuality floor = ddpm::eval::metric_floor(
      [&](ddpm::Index n, std::uint64_t seed) {
        return ddpm::data::sample_toy2d<double>(toy, n, seed);
      },
      args.n, {}, common.seed + 10, common.seed + 11);
  // The variational bound on held-out data, continuous decoder: nats per dimension.
  const ddpm::GaussianDiffusion<Real> diffusion(spec.noise_schedule(), spec.diffusion_options());
  const ddpm::Batch<Real> held_out =
      ddpm::data::sample_toy2d<Real>(toy, bound_n, common.seed + 31337);
  ddpm::io::ProgressBar progress(diffusion.num_timesteps(), "variational bound");
  const ddpm::VariationalBound<Real> bound =
      diffusion.variational_bound(model, held_out, ddpm::CounterRng(common.seed + 5), 0,
                                  [&](int done, int) { progress.update(done); });
  progress.finish();
  const double nll = bound.total.cast<double>().mean();
  const double prior = bound.prior.cast<double>().mean();
  const double decoder = bound.terms.col(0).cast<double>().mean();
  std::ostringstream json;
  json << "{\n"
       << "  \"dataset\": \"" << spec.dataset << "\",\n"
       << "  \"sampler\": \"" << args.sampler << "\",\n"
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
       << ", \"sliced_w1\": " << json_number(floor.sliced_w1) << "},\n"
       << "  \"nll_bound\": {\"unit\": \"" << bound.unit
       << "\", \"decoder\": \"continuous Gaussian\", "
       << "\"n\": " << bound_n << ", \"total\": " << json_number(nll)
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

void add_common_options(CLI::App& app, Common& common) {
  app.add_option("--seed", common.seed, "random seed")->capture_default_str();
  app.add_option("--threads", common.threads, "threads (0: OpenMP's default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--out", common.out, "output folder")->capture_default_str();
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
