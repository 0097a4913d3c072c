// SPDX-License-Identifier: MIT
// ddpm-images: train a UNet diffusion model on images (Fashion-MNIST by
// default, or your own MNIST-format files, .npy array or folder of PNG/JPEG),
// sample image grids, measure bits/dim and a classifier-feature Frechet
// distance, and train the noisy-image classifier used for guidance.
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "../common_options.hpp"
#include "../common_sampling.hpp"
#include "../common_train.hpp"
#include "../common_weights.hpp"
#include "ddpm/data/images.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/feature_frechet.hpp"
#include "ddpm/eval/ode_likelihood.hpp"
#include "ddpm/eval/strided_bound.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/npy.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/nn/classifier.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/train/image_run.hpp"
#include "ddpm/train/noisy_classifier.hpp"
#include "ddpm/viz/trajectory.hpp"

namespace {

namespace fs = std::filesystem;
using Real = float;
using Model = ddpm::nn::UNet<Real>;
using Run = ddpm::train::UNetRun;
using Common = ddpm_examples::CommonOptions;

ddpm::Index image_dim(const Run& run) {
  return run.model.image_channels * run.model.height * run.model.width;
}

void write_grid(const fs::path& path, const ddpm::Batch<Real>& images, const Run& run,
                int columns) {
  if (!ddpm_examples::writes_files()) return;  // rank 0 writes for all MPI ranks
  ddpm::io::write_png(path,
                      ddpm::io::tile_images(images, run.model.image_channels, run.model.height,
                                            run.model.width, {.columns = columns, .zoom = 2}));
}

// ---- sampling ---------------------------------------------------------------------------------

struct SampleArgs : ddpm_examples::SampleArgs {
  int label = ddpm::kClassesInTurn;  // or a class, or -1 (ddpm::kNoLabel): none
  double guidance = 0.0;             // classifier-free guidance scale w
  double guidance_rescale = 0.0;     // classifier-free guidance rescale phi
  std::string classifier;
  double classifier_scale = 0.0;
  int chunk = 256;                     // images per sampling batch (memory)
  ddpm_examples::XInit x_init;         // sample: x_T from a file instead of the prior
  bool npy_float = false;              // sample: samples.npy as float32 in the model's units
  ddpm_examples::WeightsArgs weights;  // sample: a safetensors file instead of a checkpoint
};

// What --x-init accepts for the run's images.
std::string x_init_shapes(const Run& run) {
  const ddpm::nn::UNetConfig& m = run.model;
  return "N x C x H x W (N x " + std::to_string(m.image_channels) + " x " +
         std::to_string(m.height) + " x " + std::to_string(m.width) + " for this model) or N x " +
         std::to_string(image_dim(run));
}

// Draws args.n images (planar rows in [-1, 1]) in chunks, from x_T = *x_init (args.n rows) when
// given, else from the prior; `trajectory` (when given) records the first images of the first
// chunk.
ddpm::Batch<Real> draw_samples(Model& model, const Run& run, const SampleArgs& args,
                               std::uint64_t seed,
                               ddpm::viz::TrajectoryRecorder<Real>* trajectory = nullptr,
                               const ddpm::Batch<Real>* x_init = nullptr) {
  const ddpm::GaussianDiffusion<Real> diffusion = run.diffusion.make<Real>();
  const int T = diffusion.num_timesteps();
  const int classes = run.model.num_classes;
  std::optional<ddpm::nn::Classifier<Real>> classifier;
  if (!args.classifier.empty())
    classifier.emplace(ddpm::train::load_classifier<Real>(args.classifier));
  const std::vector<int> labels =
      ddpm::sample_labels(args.n, args.label, classes, args.guidance, classifier.has_value(), "--");

  std::printf("sampling %d images: %s\n", args.n, args.describe(T).c_str());
  // With MPI ranks each draws its share of the images; the bar counts rank 0's.
  const ddpm::Index share = ddpm::rank_share(ddpm_examples::world(), args.n).size();
  ddpm::io::ProgressBar progress(
      ddpm::Index{args.steps(T)} * ((share + args.chunk - 1) / args.chunk),
      args.sampler_name() + " sampling", std::cerr, {.unit = "step"});
  int done = 0;
  ddpm::Index images_done = 0;
  ddpm_examples::SamplingThreads threads;
  const ddpm::Batch<Real> samples = ddpm_examples::sample_labeled_or_from<Real>(
      {.sampler = args.spec(),
       .guidance = args.guidance,
       .guidance_rescale = args.guidance_rescale,
       .classifier_scale = args.classifier_scale,
       .chunk = args.chunk,
       .ranks = &ddpm_examples::world()},
      diffusion, model, classifier ? &*classifier : nullptr, labels, image_dim(run), x_init,
      ddpm::CounterRng(seed), [&](ddpm::Index first, const ddpm::SamplerProgress<Real>& p) {
        threads.step_done();
        if (p.done == p.total) images_done = std::min<ddpm::Index>(share, first + args.chunk);
        progress.update(++done,
                        std::to_string(images_done) + "/" + std::to_string(share) + " images done");
        if (trajectory != nullptr && first == 0) (*trajectory)(p);
      });
  progress.finish();
  return samples;
}

// Columns of a near-square grid of n images.
int grid_columns(ddpm::Index n) {
  return static_cast<int>(std::ceil(std::sqrt(static_cast<double>(std::max<ddpm::Index>(n, 1)))));
}

// samples.png (a near-square grid) and trajectory.png (the first 8 images at 10 points of the
// reverse process, from noise to image) in `out`; returns the samples.
ddpm::Batch<Real> sample_pictures(Model& model, const Run& run, const SampleArgs& args,
                                  std::uint64_t seed, const fs::path& out,
                                  const ddpm::Batch<Real>* x_init = nullptr) {
  ddpm::viz::TrajectoryRecorder<Real> trajectory(std::min(args.n, 8), image_dim(run), 10);
  const ddpm::Batch<Real> samples = draw_samples(model, run, args, seed, &trajectory, x_init);
  write_grid(out / "samples.png", samples, run, grid_columns(samples.rows()));
  write_grid(out / "trajectory.png", trajectory.frames(), run, trajectory.frame_count());
  return samples;
}

// What sample and eval check before they load or sample anything: their input files and --out.
void check_files(const SampleArgs& args, const Common& common) {
  ddpm_examples::check_input_files(
      {{"--checkpoint", args.checkpoint, ddpm_examples::kCheckpointFile},
       {"--weights", args.weights.path, "an existing .safetensors file"},
       {"--classifier", args.classifier, "an existing train-classifier checkpoint file"},
       {"--x-init", args.x_init.path, "an existing .npy file"}});
  ddpm_examples::check_output_folder(common.out);
}

int sample(SampleArgs args, const Common& common, const std::string& png_dir,
           const Run& from_options) {
  check_files(args, common);
  if (!png_dir.empty()) ddpm_examples::check_output_folder(png_dir, 0, "--png-dir");
  auto [run, model] =
      ddpm_examples::load_model<Model, ddpm::nn::UNetConfig>(args, args.weights, from_options);
  std::optional<ddpm::Batch<Real>> x_init;
  if (args.x_init.given()) {
    const ddpm::nn::UNetConfig& m = run.model;
    x_init = ddpm_examples::read_x_init<Real>(
        args.x_init.path,
        {static_cast<std::uint64_t>(m.image_channels), static_cast<std::uint64_t>(m.height),
         static_cast<std::uint64_t>(m.width)},
        x_init_shapes(run));
    args.n = ddpm_examples::samples_of(args.x_init, args.n, x_init->rows());
  }
  const fs::path out(common.out);
  fs::create_directories(out);
  const ddpm::Batch<Real> samples =
      sample_pictures(model, run, args, common.seed, out, x_init ? &*x_init : nullptr);
  const ddpm::nn::UNetConfig& m = run.model;
  if (!ddpm_examples::writes_files()) return 0;  // rank 0 writes for all MPI ranks
  if (args.npy_float) {
    const auto u = [](ddpm::Index v) { return static_cast<std::uint64_t>(v); };
    ddpm::io::write_npy(out / "samples.npy",
                        {u(samples.rows()), u(m.image_channels), u(m.height), u(m.width)},
                        std::vector<float>(samples.data(), samples.data() + samples.size()));
  } else {
    ddpm::data::write_samples_npy(out / "samples.npy", samples, m.image_channels, m.height,
                                  m.width);
  }
  if (!png_dir.empty()) {
    ddpm::io::write_image_pngs(png_dir, samples, static_cast<int>(m.image_channels),
                               static_cast<int>(m.height), static_cast<int>(m.width));
  }
  std::printf("wrote samples.png (%d images), trajectory.png, samples.npy in %s%s\n", args.n,
              out.string().c_str(), png_dir.empty() ? "" : (" and PNGs in " + png_dir).c_str());
  return 0;
}

// ---- training ----------------------------------------------------------------------------------

struct ImageArgs {
  std::string data;
  bool class_conditional = false;
  double label_dropout = 0.1;
  bool flip = true;
  int preview = 64;
};

int train(Run run, const ImageArgs& image_args, const ddpm_examples::TrainArgs& args,
          const Common& common) {
  const fs::path out(common.out);
  // Before the images are read or anything is trained.
  ddpm_examples::check_input_files(
      {{"--resume", args.resume, ddpm_examples::kCheckpointFile},
       {"--init-from", args.init_from, ddpm_examples::kCheckpointFile}});
  ddpm_examples::check_output_folder(out);
  const ddpm::data::ImageSet set = ddpm::data::load_training_images(image_args.data);
  ddpm::train::fit_to_images(run, set, image_args.data, image_args.class_conditional);
  const ddpm::nn::UNetConfig& m = run.model;
  std::printf("%lld training images of %lldx%lldx%lld from %s%s\n",
              static_cast<long long>(set.images.rows()), static_cast<long long>(m.image_channels),
              static_cast<long long>(m.height), static_cast<long long>(m.width),
              run.data.path.c_str(),
              m.num_classes > 0 ? (", " + std::to_string(m.num_classes) + " classes").c_str() : "");
  Model model(m);
  std::printf("UNet: %lld parameters (%s)\n", static_cast<long long>(model.parameter_count()),
              run.describe_model().c_str());
  ddpm_examples::check_output_folder(
      out, ddpm_examples::checkpoint_bytes_estimate(model.parameter_count()));
  if (!args.init_from.empty()) ddpm_examples::init_from(args.init_from, run, model);
  ddpm::train::Trainer<Real, Model> trainer(
      model, run.diffusion.make<Real>(),
      ddpm_examples::trainer_options(
          args, common.seed, m.num_classes > 0 ? image_args.label_dropout : 0.0, m.image_channels),
      ddpm_examples::world());
  if (!args.resume.empty()) ddpm_examples::resume(args.resume, run, trainer);
  const ddpm::CounterRng data_rng(common.seed + 1);
  if (m.num_classes > 0) {
    ddpm_examples::run_training(trainer,
                                ddpm::data::LabeledImageBatches{&set, data_rng, image_args.flip},
                                args, run, out, 100, false);
  } else {
    ddpm_examples::run_training(trainer, ddpm::data::ImageBatches{&set, data_rng, image_args.flip},
                                args, run, out, 100, false);
  }
  if (image_args.preview > 0) {
    const auto ema = trainer.ema_weights();
    SampleArgs preview;
    preview.sampler = ddpm::SamplerKind::ddim;
    preview.n = image_args.preview;
    sample_pictures(model, run, preview, common.seed, out);
  }
  std::printf("trained to step %lld; wrote model.ckpt, loss.csv, loss.png%s in %s\n",
              static_cast<long long>(trainer.step_count()),
              image_args.preview > 0 ? ", samples.png (DDIM-50), trajectory.png" : "",
              out.string().c_str());
  return 0;
}

// ---- the noisy-image classifier ----------------------------------------------------------------

int train_classifier(const std::string& data, const ddpm::train::ClassifierRunOptions& options,
                     const Common& common) {
  const fs::path out(common.out);
  ddpm_examples::check_output_folder(out);  // before the images are read or anything is trained
  const ddpm::data::ImageSet set = ddpm::data::load_training_images(data);
  ddpm::detail::require(set.num_classes >= 2, "--data", data, "labeled images");
  ddpm_examples::check_output_folder(
      out, ddpm_examples::checkpoint_bytes_estimate(
               ddpm::nn::Classifier<Real>(ddpm::train::classifier_config(set, options))
                   .parameter_count()));
  bool held_out = false;
  const ddpm::data::ImageSet test = ddpm::data::load_held_out_images(data, held_out);
  ddpm::io::ProgressBar progress(options.steps, "train-classifier", std::cerr, {.unit = "step"});
  auto run =
      ddpm::train::train_classifier_run<Real>(set, test, options, [&](int step, double loss) {
        char line[64];
        std::snprintf(line, sizeof line, "loss %.4f", loss);
        progress.update(step, line);
      });
  progress.finish();
  ddpm::train::save_classifier(out / "classifier.ckpt", run.classifier, options.T);
  std::printf("wrote %s; accuracy on %s images:", (out / "classifier.ckpt").string().c_str(),
              held_out ? "held-out test" : "training");
  for (const auto& [t, accuracy] : run.accuracy) std::printf("  t=%d %.1f%%", t, 100.0 * accuracy);
  std::printf("\n");
  return 0;
}

// ---- evaluation --------------------------------------------------------------------------------

struct EvalArgs {
  SampleArgs sampling;
  int bound_n = 64;
  int bound_stride = 1;
  int fid_n = 1000;
  int ode_n = 16;               // the first of the bound's images for the ODE bits/dim (0: none)
  double ode_tolerance = 1e-3;  // Dormand-Prince rtol = atol
};

int eval(const EvalArgs& args, const Common& common) {
  check_files(args.sampling, common);
  auto [run, model] = ddpm_examples::load_trained<Model, ddpm::nn::UNetConfig>(args.sampling);
  const fs::path out(common.out);
  fs::create_directories(out);
  bool held_out = false;
  const ddpm::data::ImageSet reference = ddpm::data::load_held_out_images(
      run.data.name == "fashion-mnist" ? std::string() : run.data.path, held_out);
  ddpm::io::JsonObject json;
  json.add("checkpoint", args.sampling.checkpoint)
      .add("reference", held_out ? "test split" : "training data");
  const ddpm::Index bound_n = std::min<ddpm::Index>(args.bound_n, reference.images.rows());
  const int T = run.diffusion.schedule.num_timesteps;
  const auto evaluations =
      static_cast<std::int64_t>(ddpm::eval::bound_blocks(T, args.bound_stride).size()) + 1;
  ddpm::io::ProgressBar progress(evaluations, "bits/dim", std::cerr, {.unit = "t"});
  const ddpm::eval::BoundEstimate b = ddpm::eval::strided_bound(
      run.diffusion.make<Real>(), model, ddpm::Batch<Real>(reference.images.topRows(bound_n)),
      args.bound_stride, ddpm::CounterRng(common.seed + 5),
      [&](int done, int) { progress.update(done); });
  progress.finish();
  std::fprintf(stderr, "bits/dim %.3f +- %.3f (decoder %.3f, KL terms %.3f, prior %.2g)\n", b.total,
               b.standard_error, b.decoder, b.kl, b.prior);
  json.add("bits_per_dim", ddpm::eval::to_json(b));
  const ddpm::Index ode_n = std::min<ddpm::Index>(args.ode_n, bound_n);
  if (ode_n > 0) {
    // The probability-flow ODE bits/dim of the same images, dequantized, Hutchinson divergence.
    ddpm::OdeLikelihoodOptions ode_options;
    ode_options.rtol = ode_options.atol = args.ode_tolerance;
    std::vector<double> bits;
    const ddpm::OdeLikelihood ode = ddpm::ode_bits_per_dim(
        model, run.diffusion.make<Real>(), ddpm::Batch<Real>(reference.images.topRows(ode_n)),
        ddpm::CounterRng(common.seed + 6), bits, ode_options);
    double mean = 0.0;
    for (const double v : bits) mean += v / static_cast<double>(bits.size());
    std::fprintf(stderr, "ODE bits/dim %.3f on %lld images (NFE %.0f per image, tolerance %g)\n",
                 mean, static_cast<long long>(ode_n), ode.mean_evaluations(), args.ode_tolerance);
    json.add("ode_bits_per_dim", ddpm::io::JsonObject()
                                     .add("total", mean)
                                     .add("n", ode_n)
                                     .add("nfe", ode.mean_evaluations())
                                     .add("tolerance", args.ode_tolerance)
                                     .add("divergence", "hutchinson, 1 Rademacher probe")
                                     .add("dequantization", "uniform, bins 2/255"));
  }

  if (!args.sampling.classifier.empty()) {
    ddpm::nn::Classifier<Real> classifier =
        ddpm::train::load_classifier<Real>(args.sampling.classifier);
    SampleArgs sampling = args.sampling;
    sampling.n = args.fid_n;
    sampling.classifier.clear();  // the classifier measures; it does not guide
    const ddpm::Batch<Real> samples = draw_samples(model, run, sampling, common.seed);
    const ddpm::eval::FeatureFrechet fd =
        ddpm::eval::feature_frechet(classifier, samples, reference.images);
    json.add("classifier_frechet", ddpm::eval::to_json(fd, sampling.sampler_name()));
    std::fprintf(stderr,
                 "classifier-feature Frechet distance %.2f (real-vs-real floor "
                 "%.2f, n=%lld)\n",
                 fd.samples_vs_real, fd.real_vs_real_floor, static_cast<long long>(fd.n));
    const ddpm::Index shown = std::min<ddpm::Index>(64, samples.rows());
    write_grid(out / "eval_samples.png", samples.topRows(shown), run, grid_columns(shown));
  }
  ddpm::io::write_file_atomically(out / "metrics.json", json.text());
  std::cout << json.text();
  return 0;
}

// ---- quality against time ----------------------------------------------------------------------

struct CurveArgs {
  std::vector<std::string> metrics;  // eval's metrics.json files, in order
  double every = 15.0;               // the x spacing of consecutive files
  std::string unit = "minutes";      // what `every` counts
  std::string out = "out/images/curve.png";
};

// A number at `path` (keys) of eval's metrics.json, or NaN where the file has no such entry.
double metric(const nlohmann::json& json, std::initializer_list<const char*> path) {
  const nlohmann::json* node = &json;
  for (const char* key : path) {
    if (!node->is_object() || !node->contains(key)) return std::nan("");
    node = &(*node)[key];
  }
  return node->is_number() ? node->get<double>() : std::nan("");
}

// curve: bits/dim and the classifier-feature Frechet distance of a series of evaluations (one
// checkpoint every `every` units of training), as two plots side by side and a Markdown table.
int curve(const CurveArgs& args) {
  ddpm_examples::check_output_file(args.out);
  std::vector<double> bits, frechet;
  for (const std::string& path : args.metrics) {
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(ddpm::io::read_file(path, 1 << 20, "metrics file"));
    } catch (const nlohmann::json::exception& e) {
      throw ddpm::FormatError("ddpm: metrics file '" + path + "' is not JSON: " + e.what());
    }
    bits.push_back(metric(json, {"bits_per_dim", "total"}));
    frechet.push_back(metric(json, {"classifier_frechet", "samples_vs_real"}));
    if (std::isnan(bits.back()) && std::isnan(frechet.back())) {
      throw ddpm::FormatError("ddpm: metrics file '" + path +
                              "' has neither bits_per_dim.total nor "
                              "classifier_frechet.samples_vs_real (write it with `eval`)");
    }
  }
  std::printf("| %s | bits/dim | Frechet distance |\n|---|---|---|\n", args.unit.c_str());
  for (std::size_t i = 0; i < bits.size(); ++i) {
    std::printf("| %g | %.3f | %.2f |\n", args.every * static_cast<double>(i + 1), bits[i],
                frechet[i]);
  }
  const std::string x_label = args.unit + " of training";
  const auto plot = [&](const std::vector<double>& values, const std::string& title) {
    return ddpm::io::render_curve(
        values, {.title = title, .x_label = x_label, .x_start = args.every, .x_step = args.every});
  };
  const ddpm::io::Image left = plot(bits, "bits/dim (test images)");
  const ddpm::io::Image right = plot(frechet, "classifier-feature Frechet distance");
  ddpm::io::Image both = ddpm::io::Image::filled(left.width + right.width, left.height);
  const auto row_bytes = [](const ddpm::io::Image& image) {
    return static_cast<std::size_t>(image.width * image.channels);
  };
  for (int y = 0; y < left.height; ++y) {
    std::copy_n(left.pixels.begin() + static_cast<std::ptrdiff_t>(y * row_bytes(left)),
                row_bytes(left),
                both.pixels.begin() + static_cast<std::ptrdiff_t>(y * row_bytes(both)));
    std::copy_n(
        right.pixels.begin() + static_cast<std::ptrdiff_t>(y * row_bytes(right)), row_bytes(right),
        both.pixels.begin() + static_cast<std::ptrdiff_t>(y * row_bytes(both) + row_bytes(left)));
  }
  const fs::path out(args.out);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  ddpm::io::write_png(out, both);
  std::printf("wrote %s\n", args.out.c_str());
  return 0;
}

// ---- command line -----------------------------------------------------------------------------

void add_sample_options(CLI::App& app, SampleArgs& args) {
  args.sampler = ddpm::SamplerKind::ddim;
  args.n = 64;
  ddpm_examples::add_sample_options(app, args, true);
  ddpm_examples::add_sample_variance_option(app, args);
  app.add_option("--label", args.label,
                 "class of every sample (-1: none; default: the classes in turn for a "
                 "class-conditional model)");
  app.add_option("--guidance", args.guidance,
                 "classifier-free guidance weight w: (1 + w) eps(x, y) - w "
                 "eps(x), any finite w "
                 "(0: conditional, -1: unconditional; eps_u + s (eps_c - "
                 "eps_u) with s = 1 + w)")
      ->check(ddpm_examples::finite());
  app.add_option("--guidance-rescale", args.guidance_rescale,
                 "classifier-free guidance rescale phi in [0, 1] (Lin et al. 2023)")
      ->check(ddpm_examples::range(0.0, 1.0));
  app.add_option("--classifier", args.classifier,
                 "classifier.ckpt from train-classifier: classifier guidance "
                 "(sample) or the "
                 "Frechet-distance features (eval)");
  app.add_option("--classifier-scale", args.classifier_scale, "classifier guidance scale s")
      ->check(ddpm_examples::non_negative());
  app.add_option("--chunk", args.chunk, "images per sampling batch (bounds memory)")
      ->check(ddpm_examples::integer_range(1, 100000))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  // MPI under mpirun, else one process.
  auto distributed = ddpm_examples::start_distributed(argc, argv, "ddpm-images");
  if (!distributed) return 1;
  CLI::App app{
      "ddpm-images: denoising diffusion on images (Fashion-MNIST by "
      "default) with a UNet: train, "
      "sample, eval (bits/dim, classifier-feature Frechet distance), "
      "curve (eval's figures against training time), train-classifier and info."};
  app.require_subcommand(1);
  Common train_common, sample_common, eval_common, classifier_common;
  train_common.out = sample_common.out = eval_common.out = classifier_common.out = "out/images";

  // The run's defaults: UNetSmall, linear T = 1000, fixed-large variance; images are 8-bit, so the
  // bound's decoder is the discretized Gaussian (bits/dim) and sampling clips x0 to [-1, 1].
  Run run;
  run.model = ddpm::nn::unet_small_config();
  run.diffusion.options.variance = ddpm::VarianceKind::fixed_large;
  run.diffusion.options.decoder = ddpm::Decoder::discretized;
  run.diffusion.options.clip_x0 = true;
  ImageArgs image_args;
  ddpm_examples::TrainArgs train_args;
  train_args.steps = 20000;
  train_args.batch = 64;
  train_args.lr = 2e-4;
  train_args.checkpoint_every = 500;
  CLI::App* train_cmd =
      app.add_subcommand("train", "train the UNet; writes model.ckpt, loss.csv/png, samples.png");
  train_cmd->add_option("--data", image_args.data,
                        "training images: a folder of MNIST-format files (*-idx3-ubyte[.gz]), a "
                        ".npy array (N x H x W or N x C x H x W, uint8 or float in [-1, 1]), or "
                        "a "
                        "folder of PNG/JPEG files (class subfolders give labels). Default: "
                        "Fashion-MNIST from the Debian package dataset-fashion-mnist");
  train_cmd->add_flag("--class-conditional", image_args.class_conditional,
                      "condition on the labels (classifier-free guidance at sampling)");
  train_cmd
      ->add_option("--label-dropout", image_args.label_dropout,
                   "probability a label is dropped in training "
                   "(classifier-free guidance)")
      ->check(ddpm_examples::range(0.0, 1.0))
      ->capture_default_str();
  train_cmd->add_option("--flip", image_args.flip, "random horizontal flips")
      ->capture_default_str();
  train_cmd
      ->add_option("--preview", image_args.preview,
                   "DDIM-50 samples drawn at the end into samples.png (0: none)")
      ->check(ddpm_examples::integer_at_least(0))
      ->capture_default_str();
  ddpm_examples::add_train_options(*train_cmd, train_args);
  ddpm_examples::add_offset_noise_option(*train_cmd, train_args, "per image channel");
  ddpm_examples::add_diffusion_options(*train_cmd, run.diffusion);
  ddpm_examples::add_model_options(*train_cmd, run.model);
  ddpm_examples::add_common_options(*train_cmd, train_common);

  SampleArgs sample_args;
  std::string png_dir;
  CLI::App* sample_cmd = app.add_subcommand("sample",
                                            "sample images; writes samples.png, "
                                            "trajectory.png and samples.npy (uint8)");
  add_sample_options(*sample_cmd, sample_args);
  sample_cmd->add_option("--n", sample_args.n, "number of samples")
      ->check(ddpm_examples::integer_range(1, 1000000))
      ->capture_default_str();
  sample_cmd->add_option("--png-dir", png_dir, "also write one PNG per sample into this folder");
  ddpm_examples::add_x_init_option(*sample_cmd, sample_args.x_init, sample_cmd->get_option("--n"),
                                   "N x C x H x W or N x (C H W) values");
  sample_cmd->add_flag("--npy-float", sample_args.npy_float,
                       "write samples.npy as float32 N x C x H x W in the model's units (x_0 as "
                       "the sampler returns it, not rounded to bytes), e.g. to compare with "
                       "another framework");
  ddpm_examples::add_weights_option(*sample_cmd, sample_args.weights, "torch_models.UNet");
  // The run of a --weights file without __metadata__: UNetSmall on 1 x 28 x 28 images and train's
  // diffusion by default.
  Run weights_run = run;
  weights_run.data.name = "none";
  ddpm_examples::add_settings_options(*sample_cmd, sample_args.weights, [&] {
    ddpm_examples::add_diffusion_options(*sample_cmd, weights_run.diffusion);
    ddpm_examples::add_model_options(*sample_cmd, weights_run.model);
    ddpm::nn::UNetConfig& m = weights_run.model;
    sample_cmd->add_option("--channels", m.image_channels, "image channels")
        ->check(ddpm_examples::integer_range(1, 4096))
        ->capture_default_str();
    sample_cmd->add_option("--height", m.height, "image height")
        ->check(ddpm_examples::integer_range(1, 65536))
        ->capture_default_str();
    sample_cmd->add_option("--width", m.width, "image width")
        ->check(ddpm_examples::integer_range(1, 65536))
        ->capture_default_str();
    sample_cmd->add_option("--groups", m.groups, "GroupNorm groups")
        ->check(ddpm_examples::integer_range(1, 4096))
        ->capture_default_str();
    sample_cmd
        ->add_option("--classes", m.num_classes,
                     "classes of a class-conditional network (0: unconditional)")
        ->check(ddpm_examples::integer_range(0, 1000000))
        ->capture_default_str();
  });
  ddpm_examples::add_common_options(*sample_cmd, sample_common);

  EvalArgs eval_args;
  CLI::App* eval_cmd = app.add_subcommand("eval",
                                          "bits/dim on held-out images and, with "
                                          "--classifier, the classifier-feature Frechet "
                                          "distance of samples; writes metrics.json");
  add_sample_options(*eval_cmd, eval_args.sampling);
  eval_cmd->add_option("--bound-n", eval_args.bound_n, "held-out images for bits/dim")
      ->check(ddpm_examples::integer_range(1, 100000))
      ->capture_default_str();
  eval_cmd
      ->add_option("--bound-stride", eval_args.bound_stride,
                   "KL terms in blocks of up to k timesteps, each its middle term times its "
                   "width, narrower near t = 0 where the terms change fastest (1: the exact bound)")
      ->check(ddpm_examples::integer_range(1, 1000))
      ->capture_default_str();
  eval_cmd->add_option("--fid-n", eval_args.fid_n, "samples (and real images) for the distance")
      ->check(ddpm_examples::integer_range(2, 100000))
      ->capture_default_str();
  eval_cmd
      ->add_option("--ode-n", eval_args.ode_n,
                   "of the bound's images, how many get the probability-flow ODE bits/dim (0: "
                   "none)")
      ->check(ddpm_examples::integer_range(0, 100000))
      ->capture_default_str();
  eval_cmd
      ->add_option("--ode-tolerance", eval_args.ode_tolerance,
                   "rtol = atol of the ODE bits/dim (Dormand-Prince)")
      ->check(ddpm_examples::positive())
      ->capture_default_str();
  ddpm_examples::add_common_options(*eval_cmd, eval_common);

  std::string classifier_data;
  ddpm::train::ClassifierRunOptions classifier_args;
  CLI::App* classifier_cmd = app.add_subcommand("train-classifier",
                                                "train the noisy-image classifier (guidance, "
                                                "Frechet-distance features); writes "
                                                "classifier.ckpt");
  classifier_cmd->add_option("--data", classifier_data, "labeled images (as train --data)");
  classifier_cmd->add_option("--steps", classifier_args.steps, "Adam steps")
      ->check(ddpm_examples::integer_range(1, 10000000))
      ->capture_default_str();
  classifier_cmd->add_option("--batch", classifier_args.batch_size, "batch size")
      ->check(ddpm_examples::integer_range(1, 100000))
      ->capture_default_str();
  classifier_cmd->add_option("--lr", classifier_args.learning_rate, "Adam learning rate")
      ->check(ddpm_examples::positive())
      ->capture_default_str();
  classifier_cmd->add_option("--T", classifier_args.T, "diffusion steps of the noise it sees")
      ->check(ddpm_examples::integer_range(1, 100000))
      ->capture_default_str();
  classifier_cmd
      ->add_option("--clean-fraction", classifier_args.clean_fraction,
                   "fraction of training inputs at t = 0")
      ->check(ddpm_examples::range(0.0, 1.0))
      ->capture_default_str();
  classifier_cmd->add_option("--base", classifier_args.base_channels, "base channels")
      ->check(ddpm_examples::integer_range(1, 1024))
      ->capture_default_str();
  classifier_cmd->add_option("--mult", classifier_args.channel_mult, "channel multiplier per level")
      ->delimiter(',')
      ->check(ddpm_examples::integer_range(1, 64))
      ->capture_default_str();
  ddpm_examples::add_common_options(*classifier_cmd, classifier_common);

  ddpm_examples::ExportArgs export_args;
  CLI::App* export_cmd = ddpm_examples::add_export_command(app, export_args, "torch_models.UNet");

  CurveArgs curve_args;
  CLI::App* curve_cmd = app.add_subcommand(
      "curve",
      "bits/dim and Frechet distance of eval's metrics.json files against training time: "
      "curve.png (two plots) and a Markdown table");
  curve_cmd
      ->add_option("metrics", curve_args.metrics,
                   "metrics.json files of eval, one per checkpoint, in training order")
      ->required()
      ->check(CLI::ExistingFile);
  curve_cmd->add_option("--every", curve_args.every, "the training between consecutive files")
      ->check(ddpm_examples::positive())
      ->capture_default_str();
  curve_cmd->add_option("--unit", curve_args.unit, "what --every counts")
      ->check(CLI::IsMember({"minutes", "hours", "steps"}))
      ->capture_default_str();
  curve_cmd->add_option("--out", curve_args.out, "the PNG to write")->capture_default_str();

  ddpm_examples::InfoCommand info;
  info.add(app);

  CLI11_PARSE(app, argc, argv);
  try {
    ddpm_examples::refuse_ranks_unless(*train_cmd || *sample_cmd,
                                       "ddpm-images " + app.get_subcommands().front()->get_name());
    if (*train_cmd) {
      return train(run, image_args, train_args, train_common);
    }
    if (*sample_cmd) {
      ddpm::nn::UNetConfig& m = weights_run.model;
      m.output_channels = (weights_run.diffusion.learned_variance() ? 2 : 1) * m.image_channels;
      return sample(sample_args, sample_common, png_dir, weights_run);
    }
    if (*export_cmd) {
      ddpm_examples::check_input_files(
          {{"--checkpoint", export_args.checkpoint, ddpm_examples::kCheckpointFile}});
      ddpm_examples::check_output_file(export_args.out);
      return ddpm_examples::export_weights<Model, ddpm::nn::UNetConfig>(export_args);
    }
    if (*eval_cmd) {
      return eval(eval_args, eval_common);
    }
    if (*curve_cmd) {
      return curve(curve_args);
    }
    if (*classifier_cmd) {
      classifier_args.seed = classifier_common.seed;
      return train_classifier(classifier_data, classifier_args, classifier_common);
    }
    return info.run();
  } catch (const std::exception& e) {
    return distributed->fail(std::string("ddpm-images: ") + e.what(), 1);
  }
}
