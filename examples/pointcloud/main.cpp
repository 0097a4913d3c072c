// SPDX-License-Identifier: MIT
// ddpm-pointcloud: Luo & Hu's diffusion model of 3D point clouds. Each point of a shape is
// diffused independently and denoised conditioned on a shape code z; an encoder gives z for
// reconstruction, and a second diffusion model (the library's MLP) over z gives new shapes.
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "../common_dist.hpp"
#include "../common_options.hpp"
#include "../common_train.hpp"
#include "ddpm/data/shapes3d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/pointcloud_metrics.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/pointcloud.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/train/model_fields.hpp"
#include "ddpm/train/pointcloud_run.hpp"
#include "ddpm/viz/point_render.hpp"

namespace {

namespace fs = std::filesystem;
using Real = float;
using Model = ddpm::nn::PointCloudModel<Real>;
using Run = ddpm::train::PointCloudRun;
using Prior = ddpm::nn::Mlp<Real>;
using PriorRun = ddpm::train::MlpRun;
using Clouds = ddpm::train::PointClouds<Real>;
using Common = ddpm_examples::CommonOptions;

// The prior's checkpoint lives next to the autoencoder's.
fs::path prior_path_of(const fs::path& checkpoint) {
  return checkpoint.parent_path() / "prior.ckpt";
}

// ---- shared by the subcommands -----------------------------------------------------------------

struct SampleArgs : ddpm_examples::SampleArgs {
  std::string prior;    // default: prior.ckpt beside --checkpoint
  int points = 2048;    // N of the clouds drawn and compared (the decoder is per point)
  int chunk = 16;       // shapes per sampler call (bounds memory)
  std::string ply_dir;  // one .ply per shape when set
};

struct Trained {
  Run run;
  Model model;
};

Trained load_model(const std::string& checkpoint, ddpm::train::Weights weights) {
  const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(checkpoint);
  Run run = Run::from_checkpoint(c);
  Model model = ddpm::train::make_point_cloud_model<Real>(run);
  ddpm::train::load_weights(c, model, weights);
  return {std::move(run), std::move(model)};
}

struct TrainedPrior {
  PriorRun run;
  Prior model;
};

TrainedPrior load_prior(const fs::path& path, ddpm::train::Weights weights) {
  const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(path);
  PriorRun run = PriorRun::from_checkpoint(c);
  Prior model(run.model);
  ddpm::train::load_weights(c, model, weights);
  return {std::move(run), std::move(model)};
}

// Renders up to 16 clouds (normalized, S·N x 3) into a grid picture.
void write_cloud_grid(const fs::path& path, const ddpm::Batch<Real>& clouds, ddpm::Index points,
                      const std::vector<std::string>& titles = {}) {
  const ddpm::Index shown = std::min<ddpm::Index>(16, clouds.rows() / points);
  ddpm::io::write_png(path, ddpm::viz::render_cloud_grid(clouds.topRows(shown * points), points, 4,
                                                         std::span<const std::string>(titles)));
}

// Records shape 0 of the batch when the reverse process first reaches each level (descending
// original timesteps) and at the end.
struct StripRecorder {
  ddpm::Index points = 0;
  std::vector<int> levels;
  std::vector<ddpm::Batch<Real>> frames;
  std::vector<int> timesteps;
  void operator()(const ddpm::SamplerProgress<Real>& p) {
    const bool due = frames.size() < levels.size() && p.t <= levels[frames.size()];
    if (!due && p.done != p.total) return;
    frames.push_back(p.x.topRows(points));
    timesteps.push_back(p.t);
    while (frames.size() < levels.size() && p.t <= levels[frames.size()]) ++levels[frames.size()];
  }
  void write(const fs::path& path) const {
    ddpm::io::write_png(path, ddpm::viz::render_cloud_strip(frames, timesteps));
  }
};

// Draws `count` shapes decoded from `codes` (count x latent) with the run's sampler, in chunks;
// shape i is global sample (first + i)·N... of `seed`, so chunking does not change the rows.
ddpm::Batch<Real> decode(Model& model, const Run& run, const ddpm::Batch<Real>& codes,
                         const SampleArgs& args, std::uint64_t seed,
                         StripRecorder* strip = nullptr) {
  const ddpm::GaussianDiffusion<Real> diffusion = run.diffusion.make<Real>();
  const ddpm::SamplerSpec spec = args.spec();
  Model decoder = ddpm::train::with_points(model, run, args.points);
  const ddpm::Index points = args.points;
  const ddpm::Index count = codes.rows();
  ddpm::Batch<Real> clouds(count * points, 3);
  ddpm::io::ProgressBar progress(ddpm::Index{spec.step_count(diffusion.num_timesteps())} *
                                     ((count + args.chunk - 1) / args.chunk),
                                 args.sampler_name() + " sampling", std::cerr, {.unit = "step"});
  int done = 0;
  for (ddpm::Index first = 0; first < count; first += args.chunk) {
    const ddpm::Index n = std::min<ddpm::Index>(args.chunk, count - first);
    decoder.set_codes(codes.middleRows(first, n));
    const auto on_step = [&](const ddpm::SamplerProgress<Real>& p) {
      const ddpm::Index shapes_done = p.done == p.total ? first + n : first;
      progress.update(++done,
                      std::to_string(shapes_done) + "/" + std::to_string(count) + " shapes done");
      if (strip != nullptr && first == 0) (*strip)(p);
    };
    clouds.middleRows(first * points, n * points) =
        ddpm::sample(spec, diffusion, decoder, n * points, 3, ddpm::CounterRng(seed),
                     static_cast<std::uint32_t>(first * points), on_step);
  }
  progress.finish();
  return clouds;
}

// `count` new shape codes from the latent prior (in the autoencoder's code units).
ddpm::Batch<Real> prior_codes(TrainedPrior& prior, ddpm::Index count, std::uint64_t seed) {
  const ddpm::GaussianDiffusion<Real> diffusion = prior.run.diffusion.make<Real>();
  ddpm::io::ProgressBar progress(diffusion.num_timesteps(), "prior sampling", std::cerr,
                                 {.unit = "step"});
  const ddpm::Batch<Real> z =
      ddpm::sample(ddpm::SamplerKind::ancestral, diffusion, 0.0, prior.model, count,
                   prior.run.model.input_dim, ddpm::CounterRng(seed), 0,
                   [&](const ddpm::SamplerProgress<Real>& p) { progress.update(p.done); });
  progress.finish();
  const ddpm::data::Standardization units{prior.run.data.mean, prior.run.data.scale};
  return units.to_data(z);
}

// New shapes: codes from the prior, decoded by the autoencoder.
ddpm::Batch<Real> generate(Model& model, const Run& run, TrainedPrior& prior,
                           const SampleArgs& args, std::uint64_t seed,
                           StripRecorder* strip = nullptr) {
  const ddpm::Batch<Real> codes = prior_codes(prior, args.n, seed + 1);
  return decode(model, run, codes, args, seed, strip);
}

// samples.npy (S x N x 3 float32), samples.png and reverse.png; .ply files with --ply-dir.
void write_samples(const fs::path& out, const ddpm::Batch<Real>& clouds, ddpm::Index points,
                   StripRecorder& strip, const std::string& ply_dir) {
  ddpm::io::write_point_clouds_npy(out / "samples.npy", clouds, points);
  write_cloud_grid(out / "samples.png", clouds, points);
  strip.write(out / "reverse.png");
  if (!ply_dir.empty()) {
    fs::create_directories(ply_dir);
    for (ddpm::Index s = 0; s < clouds.rows() / points; ++s) {
      char name[32];
      std::snprintf(name, sizeof name, "shape_%04lld.ply", static_cast<long long>(s));
      ddpm::io::write_ply(fs::path(ply_dir) / name, clouds.middleRows(s * points, points));
    }
  }
}

StripRecorder make_strip(const Run& run, ddpm::Index points) {
  const int T = run.diffusion.schedule.num_timesteps;
  StripRecorder strip;
  strip.points = points;
  strip.levels = {T - 1, T / 2, T / 4, T / 10, T / 20};
  return strip;
}

// ---- train -------------------------------------------------------------------------------------

struct DataArgs {
  std::vector<std::string> shapes;  // families; empty: all
  std::string data;                 // a folder or .npy instead of generated shapes
  int train_shapes = 2000;
  int points = 2048;  // N of every cloud (training shapes show the model M of them per step)
  int held_out = 0;   // --data: clouds kept for evaluation (0: 10 %)
};

struct PriorArgs {
  ddpm_examples::TrainArgs train;
  ddpm::nn::MlpConfig model;
  int T = 1000;
  std::string resume;
};

Clouds make_clouds(const DataArgs& d, ddpm::Index points) {
  if (!d.data.empty()) {
    const std::string path = fs::absolute(d.data).lexically_normal().string();
    Clouds clouds = Clouds::from_path(path, points, d.held_out);
    std::printf("data: %lld clouds of %lld points from %s (%lld held out)\n",
                static_cast<long long>(clouds.config().rows), static_cast<long long>(points),
                path.c_str(), static_cast<long long>(clouds.held_out_count()));
    return clouds;
  }
  std::vector<ddpm::data::ShapeFamily> families;
  for (const std::string& name : d.shapes)
    families.push_back(ddpm::parse_enum<ddpm::data::ShapeFamily>(name));
  if (families.empty()) {
    for (const auto& entry : ddpm::EnumTable<ddpm::data::ShapeFamily>::names)
      families.push_back(entry.value);
  }
  Clouds clouds = Clouds::synthetic(families, d.train_shapes, points);
  std::printf("data: %d generated shapes of %lld points (%s)\n", d.train_shapes,
              static_cast<long long>(points), clouds.config().name.c_str());
  return clouds;
}

// Trains the latent prior on the codes of the training shapes; writes prior.ckpt.
void train_prior(Model& model, const Clouds& clouds, PriorArgs prior, const fs::path& out,
                 std::uint64_t seed) {
  ddpm::io::ProgressBar encoding(clouds.train_count(), "encoding training shapes", std::cerr,
                                 {.unit = "shape"});
  const ddpm::train::ShapeCodes<Real> codes = ddpm::train::encode_shapes(
      model, ddpm::train::even_subset(clouds.train(), clouds.points(), model.points_per_shape()),
      16, [&](ddpm::Index done, ddpm::Index) { encoding.update(done); });
  encoding.finish();
  const ddpm::data::Standardization units =
      ddpm::data::Standardization::fit(codes.mean.cast<double>(), "the shape codes");
  PriorRun run;
  run.diffusion.schedule = ddpm::train::ScheduleConfig::linear(prior.T);
  run.model = prior.model;
  run.model.input_dim = run.model.output_dim = model.latent_dim();
  run.data = {.name = "codes",
              .rows = codes.mean.rows(),
              .fingerprint = ddpm::train::data_fingerprint(codes.mean),
              .mean = units.mean,
              .scale = units.scale};
  Prior net(run.model);
  ddpm::train::Trainer<Real, Prior> trainer(net, run.diffusion.make<Real>(),
                                            ddpm_examples::trainer_options(prior.train, seed + 17));
  if (!prior.resume.empty()) ddpm_examples::resume(prior.resume, run, trainer);
  const fs::path prior_out = out / "prior";
  fs::create_directories(prior_out);
  ddpm_examples::run_training(trainer, ddpm::train::CodeBatches<Real>{&codes, units, seed + 19},
                              prior.train, run, prior_out, 100, true, "train prior");
  fs::rename(prior_out / "model.ckpt", prior_path_of(out / "model.ckpt"));
}

int train(Run run, const DataArgs& data_args, const ddpm_examples::TrainArgs& args, PriorArgs prior,
          const SampleArgs& preview, const Common& common) {
  const fs::path out(common.out);
  // Before the clouds are read or anything is trained.
  ddpm_examples::check_input_files(
      {{"--resume", args.resume, ddpm_examples::kCheckpointFile},
       {"--init-from", args.init_from, ddpm_examples::kCheckpointFile},
       {"--resume-prior", prior.resume, ddpm_examples::kCheckpointFile}});
  ddpm_examples::check_output_folder(out);
  const Clouds clouds = make_clouds(data_args, data_args.points);
  run.data = clouds.config();
  Model model = ddpm::train::make_point_cloud_model<Real>(run);
  std::printf("model: %lld parameters (%s)\n", static_cast<long long>(model.parameter_count()),
              run.describe_model().c_str());
  ddpm_examples::check_output_folder(
      out, ddpm_examples::checkpoint_bytes_estimate(model.parameter_count()));
  if (!args.init_from.empty()) ddpm_examples::init_from(args.init_from, run, model);
  ddpm::train::TrainerOptions options = ddpm_examples::trainer_options(args, common.seed);
  options.batch_size = args.batch * run.model.points_per_shape;  // --batch counts shapes
  options.timestep_group = run.model.points_per_shape;
  ddpm::train::Trainer<Real, Model> trainer(model, run.diffusion.make<Real>(), options);
  if (!args.resume.empty()) ddpm_examples::resume(args.resume, run, trainer);
  try {
    ddpm_examples::run_training(
        trainer,
        ddpm::train::ShapeBatches<Real>{&clouds.train(), data_args.points,
                                        run.model.points_per_shape, trainer.seed() + 1},
        args, run, out, 50, true, "train autoencoder");
  } catch (const ddpm::NonFiniteError& e) {
    std::cerr << "\n" << e.what() << "\n";
    return 2;
  }
  const auto ema = trainer.ema_weights();
  if (prior.train.steps > 0) train_prior(model, clouds, prior, out, trainer.seed());
  if (preview.n > 0 && fs::exists(prior_path_of(out / "model.ckpt"))) {
    TrainedPrior p = load_prior(prior_path_of(out / "model.ckpt"), ddpm::train::Weights::ema);
    StripRecorder strip = make_strip(run, preview.points);
    const ddpm::Batch<Real> samples = generate(model, run, p, preview, common.seed + 2, &strip);
    write_samples(out, samples, preview.points, strip, {});
  }
  std::printf("trained to step %lld; wrote model.ckpt, prior.ckpt, loss.csv, loss.png%s in %s\n",
              static_cast<long long>(trainer.step_count()),
              preview.n > 0 ? ", samples.npy, samples.png, reverse.png" : "", out.string().c_str());
  return 0;
}

// ---- sample / reconstruct / eval ---------------------------------------------------------------

// The run's shapes again with `points` points each (its held-out ones are the references), with a
// warning if a file's clouds changed in number.
Clouds open_clouds(const Run& run, ddpm::Index points) {
  Clouds clouds = Clouds::open(run.data, points);
  if (clouds.config().rows != run.data.rows) {
    std::cerr << "ddpm-pointcloud: warning: the data changed since training (" << run.data.path
              << "); its held-out clouds may have been trained on\n";
  }
  return clouds;
}

// What sample, reconstruct and eval check before they load or sample anything: their input files
// (a given --prior; when `uses_prior` also the default one beside --checkpoint) and output
// folders.
void check_files(const SampleArgs& args, const Common& common, bool uses_prior) {
  const std::string prior =
      args.prior.empty() && uses_prior ? prior_path_of(args.checkpoint).string() : args.prior;
  ddpm_examples::check_input_files(
      {{"--checkpoint", args.checkpoint, ddpm_examples::kCheckpointFile},
       {"--prior", prior,
        "an existing prior checkpoint file: by default prior.ckpt beside --checkpoint"}});
  ddpm_examples::check_output_folder(common.out);
  if (!args.ply_dir.empty()) ddpm_examples::check_output_folder(args.ply_dir, 0, "--ply-dir");
}

int sample(const SampleArgs& args, const Common& common) {
  check_files(args, common, true);
  auto [run, model] = load_model(args.checkpoint, args.weights());
  TrainedPrior prior = load_prior(
      args.prior.empty() ? prior_path_of(args.checkpoint) : fs::path(args.prior), args.weights());
  const fs::path out(common.out);
  fs::create_directories(out);
  StripRecorder strip = make_strip(run, args.points);
  const ddpm::Batch<Real> samples = generate(model, run, prior, args, common.seed, &strip);
  write_samples(out, samples, args.points, strip, args.ply_dir);
  std::printf("wrote samples.npy (%d shapes x %d points), samples.png, reverse.png in %s%s\n",
              args.n, args.points, out.string().c_str(),
              args.ply_dir.empty() ? "" : (" and .ply files in " + args.ply_dir).c_str());
  return 0;
}

// Codes of `clouds` (N points each) for reconstruction: the posterior means, from the M points
// the encoder was trained on (an even subset).
ddpm::Batch<Real> mean_codes(Model& model, const ddpm::Batch<Real>& clouds, ddpm::Index points) {
  const ddpm::Batch<Real> seen = ddpm::train::even_subset(clouds, points, model.points_per_shape());
  return ddpm::train::encode_shapes(model, seen, 16, [](ddpm::Index, ddpm::Index) {}).mean;
}

int reconstruct(const SampleArgs& args, const Common& common) {
  check_files(args, common, false);
  auto [run, model] = load_model(args.checkpoint, args.weights());
  const ddpm::Index points = args.points;
  const Clouds clouds = open_clouds(run, points);
  const ddpm::Index n = std::min<ddpm::Index>(args.n, clouds.held_out_count());
  const ddpm::Batch<Real> inputs = clouds.held_out(0, n);
  StripRecorder strip = make_strip(run, points);
  const ddpm::Batch<Real> outputs =
      decode(model, run, mean_codes(model, inputs, points), args, common.seed, &strip);
  const fs::path out(common.out);
  fs::create_directories(out);
  ddpm::io::write_point_clouds_npy(out / "inputs.npy", inputs, points);
  ddpm::io::write_point_clouds_npy(out / "reconstructions.npy", outputs, points);
  // Inputs and reconstructions in alternate cells of one grid.
  const ddpm::Index shown = std::min<ddpm::Index>(8, n);
  ddpm::Batch<Real> pairs(2 * shown * points, 3);
  std::vector<std::string> titles;
  for (ddpm::Index s = 0; s < shown; ++s) {
    pairs.middleRows(2 * s * points, points) = inputs.middleRows(s * points, points);
    pairs.middleRows((2 * s + 1) * points, points) = outputs.middleRows(s * points, points);
    titles.push_back("input " + std::to_string(s));
    titles.push_back("reconstruction");
  }
  write_cloud_grid(out / "reconstruct.png", pairs, points, titles);
  strip.write(out / "reverse.png");
  const ddpm::eval::ReconstructionMetrics m =
      ddpm::eval::reconstruction_metrics(inputs, outputs, points);
  std::printf("reconstruction of %lld held-out shapes: CD %.5f, EMD %.5f\n",
              static_cast<long long>(n), m.cd, m.emd);
  if (clouds.generated()) {
    const ddpm::eval::ReconstructionMetrics floor =
        ddpm::eval::reconstruction_metrics(inputs, clouds.held_out_resampled(0, n), points);
    std::printf("floor (the same surfaces sampled again): CD %.5f, EMD %.5f\n", floor.cd,
                floor.emd);
  }
  std::printf("wrote inputs.npy, reconstructions.npy, reconstruct.png, reverse.png in %s\n",
              out.string().c_str());
  return 0;
}

int eval(const SampleArgs& args, const Common& common, int emd_points) {
  check_files(args, common, true);
  auto [run, model] = load_model(args.checkpoint, args.weights());
  TrainedPrior prior = load_prior(
      args.prior.empty() ? prior_path_of(args.checkpoint) : fs::path(args.prior), args.weights());
  const ddpm::Index points = args.points;
  const Clouds clouds = open_clouds(run, points);
  const ddpm::Index n = args.n;
  ddpm::detail::require(2 * n <= clouds.held_out_count(), "--n", n,
                        "at most half the held-out shapes (" +
                            std::to_string(clouds.held_out_count()) +
                            "): a reference set and a second one for the floor");
  const fs::path out(common.out);
  fs::create_directories(out);
  StripRecorder strip = make_strip(run, points);
  const ddpm::Batch<Real> samples = generate(model, run, prior, args, common.seed, &strip);
  const ddpm::Batch<Real> reference = clouds.held_out(0, n);
  const ddpm::Batch<Real> second = clouds.held_out(n, n);
  ddpm::io::write_point_clouds_npy(out / "samples.npy", samples, points);
  ddpm::io::write_point_clouds_npy(out / "reference.npy", reference, points);
  write_cloud_grid(out / "samples.png", samples, points);
  write_cloud_grid(out / "reference.png", reference, points);
  // The references are normalized shapes; the samples, normalized by the model's training, are
  // normalized again the same way (data::normalize_clouds) so every set is measured alike.
  ddpm::Batch<Real> normalized = samples;
  ddpm::data::normalize_clouds(normalized, points);
  ddpm::eval::PointCloudEvalOptions options;
  options.emd_points = std::min<ddpm::Index>(emd_points, points);
  // The bar starts at the first report, which says how many pairs there are.
  std::optional<ddpm::io::ProgressBar> progress;
  options.progress = [&](ddpm::Index done, ddpm::Index total) {
    if (!progress)
      progress.emplace(total, "metrics", std::cerr, ddpm::io::ProgressOptions{.unit = "pair"});
    progress->update(done);
  };
  const ddpm::eval::GenerationReport report =
      ddpm::eval::generation_metrics_with_floor(normalized, reference, second, points, options);
  if (progress) progress->finish();
  const auto metrics_json = [](const ddpm::eval::GenerationMetrics& g) {
    ddpm::io::JsonObject j;
    j.add("mmd_cd", g.mmd_cd).add("cov_cd", g.cov_cd).add("1nna_cd", g.nna_cd);
    j.add("mmd_emd", g.mmd_emd).add("cov_emd", g.cov_emd).add("1nna_emd", g.nna_emd);
    return j;
  };
  ddpm::io::JsonObject json;
  json.add("checkpoint", args.checkpoint)
      .add("data", run.data.name)
      .add("normalization", "per shape: mean 0, unit coordinate std (data::normalize_clouds)")
      .add("n", n)
      .add("points", points)
      .add("emd_points", options.emd_points)
      .add("sampler", args.describe(run.diffusion.schedule.num_timesteps))
      .add("generated", metrics_json(report.generated))
      .add("floor", metrics_json(report.floor));
  ddpm::io::write_file_atomically(out / "metrics.json", json.text());
  std::cout << json.text();
  return 0;
}

// ---- command line ------------------------------------------------------------------------------

void add_sample_options(CLI::App& app, SampleArgs& args, int n) {
  args.n = n;
  ddpm_examples::add_sample_options(app, args, true);
  app.add_option("--prior", args.prior, "prior.ckpt (default: beside --checkpoint)");
  app.add_option("--n", args.n, "number of shapes")
      ->check(ddpm_examples::integer_range(1, 1000000))
      ->capture_default_str();
  app.add_option("--points", args.points, "points per shape (N) drawn and compared")
      ->check(ddpm_examples::integer_range(2, 1 << 20))
      ->capture_default_str();
  app.add_option("--chunk", args.chunk, "shapes per sampler call (bounds memory)")
      ->check(ddpm_examples::integer_range(1, 100000))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  if (!ddpm_examples::started_as_one_process("ddpm-pointcloud")) return 1;
  CLI::App app{
      "ddpm-pointcloud: Luo & Hu's diffusion model of 3D point clouds: train (an autoencoder whose "
      "decoder is a diffusion model, then a diffusion prior over its shape codes), sample, "
      "reconstruct, eval (CD/EMD MMD, COV, 1-NNA beside their floors) and info."};
  app.require_subcommand(1);
  Common train_common, sample_common, reconstruct_common, eval_common;
  train_common.out = sample_common.out = reconstruct_common.out = eval_common.out =
      "out/pointcloud";

  // The run's defaults (docs/pointcloud.md measures them).
  // Luo & Hu's networks at half their widths: on 2 cores the full widths (PointCloudModelConfig's
  // defaults) take ~2x longer per step and get half the steps in the same time.
  Run run;
  run.diffusion.schedule = ddpm::train::ScheduleConfig::linear(200);
  run.model.decoder_widths = {64, 128, 256, 128, 64};
  run.model.encoder_widths = {64, 128, 256};
  DataArgs data_args;
  ddpm_examples::TrainArgs train_args;
  train_args.steps = 20000;
  train_args.batch = 32;
  train_args.lr = 2e-3;
  train_args.warmup = 100;
  train_args.decay = ddpm::optim::LrDecay::cosine;
  train_args.grad_clip = 10.0;
  train_args.checkpoint_every = 1000;
  PriorArgs prior;
  prior.train.steps = 10000;
  prior.train.batch = 256;
  prior.train.lr = 1e-3;
  prior.train.warmup = 100;
  prior.train.decay = ddpm::optim::LrDecay::cosine;
  prior.train.checkpoint_every = 0;
  prior.model = ddpm::nn::toy_mlp_config();
  prior.model.width = 512;
  prior.model.depth = 4;
  prior.model.residual = true;
  SampleArgs preview;
  preview.n = 16;
  run.model.points_per_shape = 512;

  CLI::App* train_cmd = app.add_subcommand(
      "train",
      "train the autoencoder and the latent prior; writes model.ckpt, prior.ckpt, "
      "loss.csv/png and (--preview) samples");
  CLI::Option* shapes_option =
      train_cmd
          ->add_option("--shapes", data_args.shapes,
                       "shape families to generate: " +
                           ddpm::enum_choices<ddpm::data::ShapeFamily>() + " (default: all)")
          ->delimiter(',')
          ->check(CLI::IsMember(ddpm::enum_names<ddpm::data::ShapeFamily>()));
  train_cmd
      ->add_option("--data", data_args.data,
                   "train on your own clouds instead: a folder of .xyz/.txt/.ply/.off files or an "
                   "S x N x 3 .npy")
      ->check(CLI::ExistingPath)
      ->excludes(shapes_option);
  train_cmd->add_option("--train-shapes", data_args.train_shapes, "generated training shapes")
      ->check(ddpm_examples::integer_range(1, 1000000))
      ->capture_default_str();
  train_cmd
      ->add_option("--held-out", data_args.held_out,
                   "--data: clouds kept aside for evaluation (default: 10 %)")
      ->check(ddpm_examples::integer_at_least(0));
  train_cmd->add_option("--points", data_args.points, "points per shape (N) of the data")
      ->check(ddpm_examples::integer_range(2, 1 << 20))
      ->capture_default_str();
  train_cmd
      ->add_option("--train-points", run.model.points_per_shape,
                   "points of each shape one training step shows the model (M <= N, drawn anew "
                   "every step; more shapes and timesteps per step for the same cost)")
      ->check(ddpm_examples::integer_range(2, 1 << 20))
      ->capture_default_str();
  train_cmd->add_option("--latent", run.model.latent_dim, "size of the shape code z")
      ->check(ddpm_examples::integer_range(1, 4096))
      ->capture_default_str();
  train_cmd->add_option("--kl-weight", run.model.kl_weight, "weight of the code's KL term")
      ->check(ddpm_examples::non_negative())
      ->capture_default_str();
  train_cmd->add_option("--decoder", run.model.decoder_widths, "decoder widths, e.g. 128,256,128")
      ->delimiter(',')
      ->check(ddpm_examples::integer_range(1, 8192))
      ->capture_default_str();
  train_cmd->add_option("--encoder", run.model.encoder_widths, "encoder point-MLP widths")
      ->delimiter(',')
      ->check(ddpm_examples::integer_range(1, 8192))
      ->capture_default_str();
  train_cmd->add_option("--head", run.model.head_widths, "encoder head widths (after the max-pool)")
      ->delimiter(',')
      ->check(ddpm_examples::integer_range(1, 8192))
      ->capture_default_str();
  ddpm_examples::add_diffusion_options(*train_cmd, run.diffusion);
  ddpm_examples::add_train_options(*train_cmd, train_args);
  train_cmd->get_option("--batch")->description("shapes per step");
  train_cmd->add_option("--prior-steps", prior.train.steps, "latent-prior steps (0: none)")
      ->check(ddpm_examples::integer_at_least(0))
      ->capture_default_str();
  train_cmd->add_option("--prior-width", prior.model.width, "latent-prior MLP width")
      ->check(ddpm_examples::integer_range(1, 8192))
      ->capture_default_str();
  train_cmd->add_option("--prior-depth", prior.model.depth, "latent-prior MLP hidden layers")
      ->check(ddpm_examples::integer_range(1, 64))
      ->capture_default_str();
  train_cmd->add_option("--prior-T", prior.T, "latent-prior diffusion steps")
      ->check(ddpm_examples::integer_range(21, 100000))
      ->capture_default_str();
  train_cmd->add_option("--resume-prior", prior.resume, "continue this prior.ckpt's run")
      ->check(CLI::ExistingFile);
  train_cmd->add_option("--preview", preview.n, "shapes sampled at the end (0: none)")
      ->check(ddpm_examples::integer_at_least(0))
      ->capture_default_str();
  ddpm_examples::add_common_options(*train_cmd, train_common);

  SampleArgs sample_args, reconstruct_args, eval_args;
  int emd_points = 1024;
  CLI::App* sample_cmd = app.add_subcommand(
      "sample", "new shapes: samples.npy (S x N x 3 float32), samples.png, reverse.png");
  add_sample_options(*sample_cmd, sample_args, 16);
  sample_cmd->add_option("--ply-dir", sample_args.ply_dir, "also write one .ply per shape here");
  ddpm_examples::add_common_options(*sample_cmd, sample_common);

  CLI::App* reconstruct_cmd =
      app.add_subcommand("reconstruct",
                         "encode and decode held-out shapes: inputs.npy, reconstructions.npy, "
                         "reconstruct.png, CD and EMD");
  add_sample_options(*reconstruct_cmd, reconstruct_args, 16);
  ddpm_examples::add_common_options(*reconstruct_cmd, reconstruct_common);

  CLI::App* eval_cmd =
      app.add_subcommand("eval",
                         "generation metrics against held-out shapes: metrics.json, samples.npy, "
                         "reference.npy");
  add_sample_options(*eval_cmd, eval_args, 64);
  eval_cmd
      ->add_option("--emd-points", emd_points,
                   "points per cloud for the EMD (an even subset; CD uses all N)")
      ->check(ddpm_examples::integer_range(2, 1 << 20))
      ->capture_default_str();
  ddpm_examples::add_common_options(*eval_cmd, eval_common);

  ddpm_examples::InfoCommand info;
  info.add(app);

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train_cmd) {
      preview.points = data_args.points;
      return train(run, data_args, train_args, prior, preview, train_common);
    }
    if (*sample_cmd) return sample(sample_args, sample_common);
    if (*reconstruct_cmd) return reconstruct(reconstruct_args, reconstruct_common);
    if (*eval_cmd) return eval(eval_args, eval_common, emd_points);
    return info.run();
  } catch (const std::exception& e) {
    std::cerr << "ddpm-pointcloud: " << e.what() << "\n";
    return 1;
  }
}
