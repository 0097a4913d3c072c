// SPDX-License-Identifier: MIT
// ddpm-images: train a UNet diffusion model on images (Fashion-MNIST by default, or your own
// MNIST-format files, .npy array or folder of PNG/JPEG), sample image grids, measure bits/dim and a
// classifier-feature Frechet distance, and train the noisy-image classifier used for guidance.
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "../common_options.hpp"
#include "ddpm/data/images.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/frechet.hpp"
#include "ddpm/guidance.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/nn/classifier.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/trainer.hpp"

namespace {

namespace fs = std::filesystem;
using Real = float;
using Model = ddpm::nn::UNet<Real>;

// "a,b,c" as integers, for channel multipliers and attention resolutions.
std::vector<ddpm::Index> split_integers(const std::string& text, const std::string& what) {
  std::vector<ddpm::Index> values;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    long long v = 0;
    const std::from_chars_result r = std::from_chars(p, end, v);
    if (r.ec != std::errc{}) throw ddpm::InvalidArgument(what, text, "comma-separated integers");
    values.push_back(v);
    p = r.ptr;
    if (p < end && *p == ',') ++p;
  }
  return values;
}

int parse_int(const ddpm::train::Checkpoint& c, const std::string& key) {
  const std::string& text = c.get(key);
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) {
    throw ddpm::FormatError("ddpm: checkpoint metadata '" + key + "' is not an integer: " + text);
  }
  return value;
}

// Everything that defines the model and its diffusion; stored in the checkpoint's metadata so that
// `sample` and `eval` rebuild exactly what `train` trained.
struct ModelSpec {
  std::string data;  // where the training images came from
  int height = 28, width = 28, channels = 1;
  int num_classes = 0;  // > 0: class-conditional
  std::string schedule = "linear";
  int num_timesteps = 1000;
  std::string output = "eps";
  std::string variance = "fixed-large";
  std::string loss = "simple";
  int base = 32;
  std::string mult = "1,2,2";
  int res_blocks = 1;
  std::string attention;  // resolutions with attention besides the middle
  int heads = 1;
  double dropout = 0.0;
  bool scale_shift = false;

  [[nodiscard]] bool learned_variance() const {
    return variance == "learned" || variance == "learned-range";
  }
  [[nodiscard]] ddpm::nn::UNetConfig unet(std::uint64_t seed) const {
    ddpm::nn::UNetConfig config = ddpm::nn::unet_small_config(seed);
    config.image_channels = channels;
    config.height = height;
    config.width = width;
    config.output_channels = learned_variance() ? 2 * channels : channels;
    config.base_channels = base;
    config.channel_mult = split_integers(mult, "--mult");
    config.res_blocks = res_blocks;
    config.attention_resolutions = split_integers(attention, "--attention");
    config.attention_heads = heads;
    config.dropout = dropout;
    config.num_classes = num_classes;
    config.injection =
        scale_shift ? ddpm::nn::EmbeddingInjection::scale_shift : ddpm::nn::EmbeddingInjection::add;
    return config;
  }
  [[nodiscard]] std::string architecture() const {
    return "unet " + std::to_string(channels) + "x" + std::to_string(height) + "x" +
           std::to_string(width) + " base=" + std::to_string(base) + " mult=" + mult +
           " blocks=" + std::to_string(res_blocks) + " attention=" + attention +
           " heads=" + std::to_string(heads) + " classes=" + std::to_string(num_classes) +
           " variance=" + variance + (scale_shift ? " scale-shift" : "");
  }
  [[nodiscard]] ddpm::NoiseSchedule noise_schedule() const {
    if (schedule == "cosine") return ddpm::NoiseSchedule::cosine(num_timesteps);
    return ddpm::NoiseSchedule::linear(num_timesteps);
  }
  // Images are 8-bit: the bound's decoder is the discretized Gaussian of Ho et al. (bits/dim).
  [[nodiscard]] ddpm::DiffusionOptions diffusion_options() const {
    return {.output = ddpm::parse_enum<ddpm::ModelOutput>(output),
            .variance = ddpm::parse_enum<ddpm::VarianceKind>(variance),
            .loss = ddpm::parse_enum<ddpm::LossKind>(loss),
            .decoder = ddpm::Decoder::discretized,
            .clip_x0 = true};
  }
  [[nodiscard]] ddpm::Index dim() const { return ddpm::Index{channels} * height * width; }

  void store(ddpm::train::Checkpoint& c) const {
    c.set("images.data", data);
    c.set("images.height", std::to_string(height));
    c.set("images.width", std::to_string(width));
    c.set("images.channels", std::to_string(channels));
    c.set("images.classes", std::to_string(num_classes));
    c.set("images.schedule", schedule);
    c.set("images.T", std::to_string(num_timesteps));
    c.set("images.output", output);
    c.set("images.variance", variance);
    c.set("images.loss", loss);
    c.set("images.base", std::to_string(base));
    c.set("images.mult", mult);
    c.set("images.blocks", std::to_string(res_blocks));
    c.set("images.attention", attention);
    c.set("images.heads", std::to_string(heads));
    c.set("images.dropout", std::to_string(dropout));
    c.set("images.scale_shift", scale_shift ? "1" : "0");
  }
  static ModelSpec load(const ddpm::train::Checkpoint& c) {
    ModelSpec s;
    s.data = c.get("images.data");
    s.height = parse_int(c, "images.height");
    s.width = parse_int(c, "images.width");
    s.channels = parse_int(c, "images.channels");
    s.num_classes = parse_int(c, "images.classes");
    s.schedule = c.get("images.schedule");
    s.num_timesteps = parse_int(c, "images.T");
    s.output = c.get("images.output");
    s.variance = c.get("images.variance");
    s.loss = c.get("images.loss");
    s.base = parse_int(c, "images.base");
    s.mult = c.get("images.mult");
    s.res_blocks = parse_int(c, "images.blocks");
    s.attention = c.get("images.attention");
    s.heads = parse_int(c, "images.heads");
    s.dropout = std::stod(c.get("images.dropout"));
    s.scale_shift = c.get("images.scale_shift") == "1";
    return s;
  }
};

struct Common : ddpm_examples::CommonOptions {
  Common() { out = "out/images"; }
};
using ddpm_examples::add_common_options;
using ddpm_examples::set_threads;

// The training images: --data, or Fashion-MNIST from the Debian package.
ddpm::data::ImageSet load_training_images(const std::string& data) {
  if (data.empty()) return ddpm::data::load_mnist_format(ddpm::data::kFashionMnistDir, "train");
  return ddpm::data::load_images(data);
}

// Held-out images for eval: the test split for MNIST-format folders, otherwise the training data.
ddpm::data::ImageSet load_reference_images(const std::string& data, bool& held_out) {
  const fs::path dir = data.empty() ? fs::path(ddpm::data::kFashionMnistDir) : fs::path(data);
  held_out = fs::is_directory(dir) && (fs::exists(dir / "t10k-images-idx3-ubyte.gz") ||
                                       fs::exists(dir / "t10k-images-idx3-ubyte"));
  if (held_out) return ddpm::data::load_mnist_format(dir, "test");
  return ddpm::data::load_images(data);
}

// Loads a checkpoint written by `train`, with the EMA weights unless raw ones are asked for.
Model load_model(const std::string& path, bool raw_weights, ModelSpec& spec) {
  const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(path);
  spec = ModelSpec::load(c);
  Model model(spec.unet(0));
  if (c.contains("ema.shadow") && !raw_weights) {
    c.take<Real>("ema.shadow", model.parameter_values());
  } else {
    for (const ddpm::ParameterBlock<Real>& block : model.parameters()) {
      c.take<Real>("model." + block.name, block.value);
    }
  }
  return model;
}

// ---- sampling ---------------------------------------------------------------------------------

struct SampleArgs {
  std::string checkpoint;
  std::string sampler = "ddim";
  int sample_steps = 0;  // 0: 50 for ddim, T for ddpm
  double eta = 0.0;
  int n = 64;
  int label = -2;         // -2: cycle through the classes of a conditional model; -1: no label
  double guidance = 0.0;  // classifier-free guidance scale w
  std::string classifier;
  double classifier_scale = 0.0;
  int chunk = 256;  // images per sampling batch (memory)
  bool raw_weights = false;
};

ddpm::nn::Classifier<Real> load_classifier(const std::string& path) {
  const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(path);
  if (!c.has("classifier.classes")) {
    throw ddpm::FormatError("ddpm: '" + path + "' is not a classifier written by train-classifier");
  }
  ddpm::nn::ClassifierConfig config;
  config.height = parse_int(c, "classifier.height");
  config.width = parse_int(c, "classifier.width");
  config.image_channels = parse_int(c, "classifier.channels");
  config.num_classes = parse_int(c, "classifier.classes");
  config.base_channels = parse_int(c, "classifier.base");
  config.channel_mult = split_integers(c.get("classifier.mult"), "classifier.mult");
  ddpm::nn::Classifier<Real> classifier(config);
  for (const ddpm::ParameterBlock<Real>& block : classifier.parameters()) {
    c.take<Real>("classifier." + block.name, block.value);
  }
  classifier.set_training(false);
  return classifier;
}

// Labels for n samples: all `label`, or the classes in turn (-2) for a conditional model.
std::vector<int> sample_labels(const SampleArgs& args, int num_classes) {
  std::vector<int> labels(static_cast<std::size_t>(args.n), ddpm::kNoLabel);
  for (int i = 0; i < args.n; ++i) {
    if (args.label >= 0) {
      labels[static_cast<std::size_t>(i)] = args.label;
    } else if (args.label == -2 && num_classes > 0) {
      labels[static_cast<std::size_t>(i)] = i % num_classes;
    }
  }
  return labels;
}

// Draws args.n images (planar rows in [-1, 1]) in chunks; `trajectory` gets the first images at
// 10 points of the reverse process (rows: images, columns: time), when given.
ddpm::Batch<Real> draw_samples(Model& model, const ModelSpec& spec, const SampleArgs& args,
                               std::uint64_t seed, ddpm::Batch<Real>* trajectory) {
  const bool ddim = args.sampler == "ddim";
  const int steps = args.sample_steps > 0 ? args.sample_steps : ddim ? 50 : spec.num_timesteps;
  ddpm::detail::require(steps <= spec.num_timesteps, "--sample-steps", steps,
                        "1.." + std::to_string(spec.num_timesteps));
  const ddpm::NoiseSchedule full = spec.noise_schedule();
  const ddpm::NoiseSchedule schedule =
      steps == spec.num_timesteps ? full : full.respaced("evenly " + std::to_string(steps));
  const ddpm::GaussianDiffusion<Real> diffusion(schedule, spec.diffusion_options());
  const std::vector<int> labels = sample_labels(args, spec.num_classes);
  if (args.label >= 0 || args.guidance > 0.0) {
    ddpm::detail::require(spec.num_classes > 0, "--label/--guidance", args.label,
                          "a class-conditional model (train --class-conditional)");
    ddpm::detail::require(args.label < spec.num_classes, "--label", args.label,
                          "-1..num_classes-1 = " + std::to_string(spec.num_classes - 1));
  }
  std::optional<ddpm::nn::Classifier<Real>> classifier;
  if (!args.classifier.empty()) classifier.emplace(load_classifier(args.classifier));
  ddpm::detail::require(!classifier || args.label >= 0, "--label", args.label,
                        "a class in 0.. for classifier guidance");

  const ddpm::Index dim = spec.dim();
  const ddpm::Index guided = dim;  // the epsilon part; a learned variance follows it
  const int keep = std::min(args.n, 8);
  const int frames = 10;
  if (trajectory != nullptr) trajectory->resize(ddpm::Index{keep} * frames, dim);
  ddpm::Batch<Real> samples(args.n, dim);
  model.set_training(false);
  ddpm::io::ProgressBar progress(ddpm::Index{steps} * ((args.n + args.chunk - 1) / args.chunk),
                                 args.sampler + " sampling", std::cerr, {.unit = "step"});
  int done = 0;
  for (int first = 0; first < args.n; first += args.chunk) {
    const int count = std::min(args.chunk, args.n - first);
    const std::span<const int> chunk_labels(labels.data() + first, static_cast<std::size_t>(count));
    const auto on_step = [&](const ddpm::SamplerProgress<Real>& p) {
      progress.update(++done);
      if (trajectory == nullptr || first != 0) return;
      // Frame k shows the batch after step round((k + 1) * total / frames).
      for (int k = 0; k < frames; ++k) {
        if (p.done == std::max(1, (k + 1) * p.total / frames)) {
          for (int i = 0; i < std::min(keep, count); ++i) {
            trajectory->row(ddpm::Index{i} * frames + k) = p.x.row(i);
          }
        }
      }
    };
    const auto run = [&](auto& denoiser) {
      const ddpm::CounterRng rng(seed);
      const auto first_sample = static_cast<std::uint32_t>(first);
      if (ddim) {
        ddpm::DdimSampler<Real> sampler(diffusion, args.eta);
        return sampler.sample(denoiser, count, dim, rng, first_sample, on_step);
      }
      ddpm::AncestralSampler<Real> sampler(diffusion);
      return sampler.sample(denoiser, count, dim, rng, first_sample, on_step);
    };
    ddpm::Batch<Real> part;
    if (classifier) {
      ddpm::ClassifierGuidance<Real, Model, ddpm::nn::Classifier<Real>> denoiser(
          model, *classifier, diffusion, chunk_labels, args.classifier_scale, guided);
      part = run(denoiser);
    } else if (args.guidance > 0.0) {
      ddpm::ClassifierFreeGuidance<Real, Model> denoiser(model, chunk_labels, args.guidance,
                                                         guided);
      part = run(denoiser);
    } else {
      ddpm::WithLabels<Real, Model> denoiser(model, chunk_labels);
      part = run(denoiser);
    }
    samples.middleRows(first, count) = part;
  }
  progress.finish();
  model.set_training(true);
  return samples;
}

void write_grid(const fs::path& path, const ddpm::Batch<Real>& images, const ModelSpec& spec,
                int columns) {
  ddpm::io::write_png(path, ddpm::io::tile_images(images, spec.channels, spec.height, spec.width,
                                                  {.columns = columns, .zoom = 2}));
}

int sample(const SampleArgs& args, const Common& common, const std::string& png_dir) {
  ModelSpec spec;
  Model model = load_model(args.checkpoint, args.raw_weights, spec);
  const fs::path out(common.out);
  fs::create_directories(out);
  ddpm::Batch<Real> trajectory;
  const ddpm::Batch<Real> samples = draw_samples(model, spec, args, common.seed, &trajectory);
  write_grid(out / "samples.png", samples, spec, 8);
  write_grid(out / "trajectory.png", trajectory, spec, 10);
  ddpm::data::write_samples_npy(out / "samples.npy", samples, spec.channels, spec.height,
                                spec.width);
  if (!png_dir.empty()) {
    fs::create_directories(png_dir);
    for (ddpm::Index i = 0; i < samples.rows(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "%06lld.png", static_cast<long long>(i));
      ddpm::io::write_png(fs::path(png_dir) / name,
                          ddpm::io::tile_images(samples.row(i), spec.channels, spec.height,
                                                spec.width, {.columns = 1, .padding = 0}));
    }
  }
  std::printf("wrote samples.png (%d images), trajectory.png, samples.npy in %s%s\n", args.n,
              out.string().c_str(), png_dir.empty() ? "" : (" and PNGs in " + png_dir).c_str());
  return 0;
}

// ---- training ----------------------------------------------------------------------------------

struct TrainArgs {
  ModelSpec spec;
  bool class_conditional = false;
  double label_dropout = 0.1;
  int steps = 20000;
  double minutes = 0.0;
  int batch = 64;
  double lr = 2e-4;
  int warmup = 0;
  std::string decay = "constant";
  double grad_clip = 1.0;
  double ema = 0.999;
  bool flip = true;
  std::string resume;
  int checkpoint_every = 500;
  int preview = 64;
};

int train(const TrainArgs& args, const Common& common) {
  ModelSpec spec = args.spec;
  const ddpm::data::ImageSet set = load_training_images(spec.data);
  spec.data = spec.data.empty() ? std::string(ddpm::data::kFashionMnistDir) : spec.data;
  spec.height = static_cast<int>(set.height);
  spec.width = static_cast<int>(set.width);
  spec.channels = static_cast<int>(set.channels);
  if (args.class_conditional) {
    ddpm::detail::require(set.num_classes > 0, "--class-conditional", spec.data,
                          "labeled data (MNIST-format labels or class subfolders)");
    spec.num_classes = set.num_classes;
  }
  std::printf(
      "%lld training images of %dx%dx%d from %s%s\n", static_cast<long long>(set.images.rows()),
      spec.channels, spec.height, spec.width, spec.data.c_str(),
      spec.num_classes > 0 ? (", " + std::to_string(spec.num_classes) + " classes").c_str() : "");
  Model model(spec.unet(common.seed));
  std::printf("UNet: %lld parameters (%s)\n", static_cast<long long>(model.parameter_count()),
              spec.architecture().c_str());
  const ddpm::GaussianDiffusion<Real> diffusion(spec.noise_schedule(), spec.diffusion_options());
  ddpm::optim::LrDecay decay = ddpm::optim::LrDecay::constant;
  if (args.decay == "cosine") decay = ddpm::optim::LrDecay::cosine;
  if (args.decay == "linear") decay = ddpm::optim::LrDecay::linear;
  ddpm::train::Trainer<Real, Model> trainer(
      model, diffusion,
      {.batch_size = args.batch,
       .steps = args.steps,
       .adam = {.learning_rate = args.lr},
       .warmup_steps = args.warmup,
       .decay = decay,
       .grad_clip = args.grad_clip,
       .ema_decay = args.ema,
       .label_dropout = spec.num_classes > 0 ? args.label_dropout : 0.0,
       .seed = common.seed});
  if (!args.resume.empty()) {
    trainer.restore(ddpm::train::Checkpoint::load(args.resume), spec.architecture());
    std::printf("resumed from %s at step %lld\n", args.resume.c_str(),
                static_cast<long long>(trainer.step_count()));
  }
  const fs::path out(common.out);
  fs::create_directories(out);
  const ddpm::CounterRng data_rng(common.seed + 1);
  const auto unlabeled = [&](std::int64_t step, ddpm::Index n, ddpm::Batch<Real>& x) {
    std::vector<int> ignored;
    x.resize(n, spec.dim());
    ddpm::data::sample_image_batch(set, data_rng, static_cast<std::uint32_t>(step), args.flip, x,
                                   ignored);
  };
  const auto labeled = [&](std::int64_t step, ddpm::Index n, ddpm::Batch<Real>& x,
                           std::vector<int>& labels) {
    x.resize(n, spec.dim());
    ddpm::data::sample_image_batch(set, data_rng, static_cast<std::uint32_t>(step), args.flip, x,
                                   labels);
  };
  const ddpm::train::Trainer<Real, Model>::RunOptions run{
      .checkpoint = out / "model.ckpt",
      .checkpoint_every = args.checkpoint_every,
      .architecture = spec.architecture(),
      .loss_csv = out / "loss.csv",
      .time_limit_seconds = 60.0 * args.minutes};
  const auto annotate = [&](ddpm::train::Checkpoint& c) { spec.store(c); };
  const std::int64_t first = trainer.step_count();
  const std::vector<double> losses = spec.num_classes > 0 ? trainer.run(labeled, run, annotate)
                                                          : trainer.run(unlabeled, run, annotate);
  if (!losses.empty()) {
    ddpm::io::write_png(out / "loss.png", ddpm::io::render_curve(
                                              losses, {.smoothing = 100,
                                                       .title = "training loss (" + spec.loss + ")",
                                                       .x_label = "step",
                                                       .x_start = static_cast<double>(first + 1)}));
  }
  if (args.preview > 0) {
    const auto ema = trainer.ema_weights();
    SampleArgs preview;
    preview.n = args.preview;
    ddpm::Batch<Real> trajectory;
    const ddpm::Batch<Real> samples = draw_samples(model, spec, preview, common.seed, &trajectory);
    write_grid(out / "samples.png", samples, spec, 8);
    write_grid(out / "trajectory.png", trajectory, spec, 10);
  }
  std::printf("trained to step %lld; wrote model.ckpt, loss.csv, loss.png%s in %s\n",
              static_cast<long long>(trainer.step_count()),
              args.preview > 0 ? ", samples.png (DDIM-50), trajectory.png" : "",
              out.string().c_str());
  return 0;
}

// ---- the noisy-image classifier ----------------------------------------------------------------

struct ClassifierArgs {
  std::string data;
  int steps = 3000;
  int batch = 128;
  double lr = 1e-3;
  int T = 1000;
  double clean_fraction = 0.5;
  int base = 32;
  std::string mult = "1,2,2";
};

// Accuracy of the classifier on `set` at timestep t (noised with q_sample), in batches.
double accuracy(ddpm::nn::Classifier<Real>& classifier, const ddpm::data::ImageSet& set, int t,
                const ddpm::GaussianDiffusion<Real>& diffusion, std::uint64_t seed) {
  const ddpm::Index n = set.images.rows();
  ddpm::Index correct = 0;
  classifier.set_training(false);
  for (ddpm::Index first = 0; first < n; first += 500) {
    const ddpm::Index count = std::min<ddpm::Index>(500, n - first);
    const ddpm::Batch<Real> x0 = set.images.middleRows(first, count);
    const std::vector<int> ts(static_cast<std::size_t>(count), t);
    ddpm::Batch<Real> noise(count, x0.cols()), x_t;
    ddpm::CounterRng(seed).fill_normal(noise, ddpm::stream::user, static_cast<std::uint32_t>(first),
                                       static_cast<std::uint32_t>(t));
    diffusion.q_sample(x0, ts, noise, x_t);
    ddpm::Index right = 0;
    classifier.cross_entropy(
        x_t, ts, std::span<const int>(set.labels.data() + first, static_cast<std::size_t>(count)),
        &right);
    correct += right;
  }
  classifier.set_training(true);
  return static_cast<double>(correct) / static_cast<double>(n);
}

int train_classifier(const ClassifierArgs& args, const Common& common) {
  const ddpm::data::ImageSet set = load_training_images(args.data);
  ddpm::detail::require(set.num_classes >= 2, "--data", args.data, "labeled images");
  bool held_out = false;
  const ddpm::data::ImageSet test = load_reference_images(args.data, held_out);
  ddpm::nn::ClassifierConfig config;
  config.height = set.height;
  config.width = set.width;
  config.image_channels = set.channels;
  config.num_classes = set.num_classes;
  config.base_channels = args.base;
  config.channel_mult = split_integers(args.mult, "--mult");
  config.seed = common.seed;
  ddpm::nn::Classifier<Real> classifier(config);
  const ddpm::GaussianDiffusion<Real> diffusion(ddpm::NoiseSchedule::linear(args.T));
  ddpm::optim::Adam<Real> adam({.learning_rate = args.lr});
  const ddpm::CounterRng rng(common.seed + 3);
  ddpm::Batch<Real> x0(args.batch, set.images.cols()), noise, x_t;
  std::vector<int> labels, t(static_cast<std::size_t>(args.batch));
  ddpm::io::ProgressBar progress(args.steps, "train-classifier", std::cerr, {.unit = "step"});
  double smoothed = std::log(static_cast<double>(set.num_classes));
  for (int step = 0; step < args.steps; ++step) {
    const auto counter = static_cast<std::uint32_t>(step);
    ddpm::data::sample_image_batch(set, rng, counter, true, x0, labels);
    // Noisy inputs at uniform timesteps (Dhariwal & Nichol), a fraction of them clean so the
    // t = 0 features used by the Frechet distance are those of a good clean-image classifier.
    for (int i = 0; i < args.batch; ++i) {
      const bool clean = rng.uniform(ddpm::stream::timesteps, static_cast<std::uint32_t>(i),
                                     counter, 1) < args.clean_fraction;
      t[static_cast<std::size_t>(i)] =
          clean ? 0
                : static_cast<int>(rng.uniform_int(ddpm::stream::timesteps,
                                                   static_cast<std::uint32_t>(i), counter,
                                                   static_cast<std::uint64_t>(args.T)));
    }
    noise.resize(x0.rows(), x0.cols());
    rng.fill_normal(noise, ddpm::stream::forward_noise, 0, counter);
    diffusion.q_sample(x0, t, noise, x_t);
    classifier.zero_grad();
    classifier.set_dropout_source(rng, counter);
    const double loss = classifier.cross_entropy(x_t, t, labels);
    if (!std::isfinite(loss)) {
      throw ddpm::NonFiniteError("ddpm: classifier training diverged at step " +
                                 std::to_string(step) + " (try a lower --lr)");
    }
    adam.step(classifier.parameters());
    smoothed = 0.98 * smoothed + 0.02 * loss;
    char line[64];
    std::snprintf(line, sizeof line, "loss %.4f", smoothed);
    progress.update(step + 1, line);
  }
  progress.finish();
  const fs::path out(common.out);
  fs::create_directories(out);
  ddpm::train::Checkpoint c;
  c.set("format", "ddpm classifier");
  c.set("classifier.height", std::to_string(config.height));
  c.set("classifier.width", std::to_string(config.width));
  c.set("classifier.channels", std::to_string(config.image_channels));
  c.set("classifier.classes", std::to_string(config.num_classes));
  c.set("classifier.base", std::to_string(config.base_channels));
  c.set("classifier.mult", args.mult);
  c.set("classifier.T", std::to_string(args.T));
  for (const ddpm::ParameterBlock<Real>& block : classifier.parameters()) {
    c.put<Real>("classifier." + block.name, std::span<const Real>(block.value));
  }
  c.save(out / "classifier.ckpt");
  std::printf("wrote %s; accuracy on %s images:", (out / "classifier.ckpt").string().c_str(),
              held_out ? "held-out test" : "training");
  for (const int ti : {0, args.T / 4, args.T / 2, (3 * args.T) / 4}) {
    std::printf("  t=%d %.1f%%", ti,
                100.0 * accuracy(classifier, test, ti, diffusion, common.seed));
  }
  std::printf("\n");
  return 0;
}

// ---- evaluation --------------------------------------------------------------------------------

struct EvalArgs {
  SampleArgs sampling;
  int bound_n = 64;
  int bound_stride = 1;
  int fid_n = 1000;
};

// The variational bound in bits/dim on x0 (discretized decoder), with the KL terms at every
// `stride`-th timestep (t = 0 always, for the decoder) scaled by stride: the terms vary slowly in
// t, so this is a Riemann-sum estimate of the full sum; stride 1 is the exact bound.
struct BitsPerDim {
  double total = 0, decoder = 0, kl = 0, prior = 0, standard_error = 0;
};
BitsPerDim bits_per_dim(Model& model, const ModelSpec& spec, const ddpm::Batch<Real>& x0,
                        int stride, std::uint64_t seed) {
  const ddpm::GaussianDiffusion<Real> diffusion(spec.noise_schedule(), spec.diffusion_options());
  const ddpm::Index n = x0.rows();
  Eigen::VectorXd decoder = Eigen::VectorXd::Zero(n), kl = Eigen::VectorXd::Zero(n);
  ddpm::Batch<Real> noise(n, x0.cols()), x_t, out;
  ddpm::Vector<Real> terms, prior;
  std::vector<int> timesteps;
  for (int t = 0; t < spec.num_timesteps; t += stride) timesteps.push_back(t);
  model.set_training(false);
  ddpm::io::ProgressBar progress(static_cast<std::int64_t>(timesteps.size()), "bits/dim", std::cerr,
                                 {.unit = "t"});
  int done = 0;
  for (const int t : timesteps) {
    const std::vector<int> ts(static_cast<std::size_t>(n), t);
    ddpm::CounterRng(seed).fill_normal(noise, ddpm::stream::forward_noise, 0,
                                       static_cast<std::uint32_t>(t));
    diffusion.q_sample(x0, ts, noise, x_t);
    model.predict(x_t, ts, out);
    diffusion.bound_terms(out, x0, x_t, ts, terms);
    if (t == 0) {
      decoder += terms.cast<double>();
    } else {
      kl += static_cast<double>(stride) * terms.cast<double>();
    }
    progress.update(++done);
  }
  progress.finish();
  model.set_training(true);
  diffusion.prior_term(x0, prior);
  const Eigen::VectorXd total = decoder + kl + prior.cast<double>();
  BitsPerDim b;
  b.total = total.mean();
  b.decoder = decoder.mean();
  b.kl = kl.mean();
  b.prior = prior.cast<double>().mean();
  b.standard_error = n > 1 ? std::sqrt((total.array() - b.total).square().sum() / (n - 1) / n) : 0;
  return b;
}

std::string number(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.6g", v);
  return buffer;
}

int eval(const EvalArgs& args, const Common& common) {
  ModelSpec spec;
  Model model = load_model(args.sampling.checkpoint, args.sampling.raw_weights, spec);
  const fs::path out(common.out);
  fs::create_directories(out);
  bool held_out = false;
  const ddpm::data::ImageSet reference = load_reference_images(
      spec.data == ddpm::data::kFashionMnistDir ? std::string() : spec.data, held_out);
  std::ostringstream json;
  json << "{\n  \"checkpoint\": \"" << args.sampling.checkpoint << "\",\n"
       << "  \"reference\": \"" << (held_out ? "test split" : "training data") << "\",\n";

  const ddpm::Index bound_n = std::min<ddpm::Index>(args.bound_n, reference.images.rows());
  const BitsPerDim b = bits_per_dim(model, spec, reference.images.topRows(bound_n),
                                    args.bound_stride, common.seed + 5);
  json << "  \"bits_per_dim\": {\"n\": " << bound_n << ", \"stride\": " << args.bound_stride
       << ", \"total\": " << number(b.total) << ", \"standard_error\": " << number(b.standard_error)
       << ", \"decoder_L0\": " << number(b.decoder) << ", \"kl_terms\": " << number(b.kl)
       << ", \"prior_LT\": " << number(b.prior) << "}";
  std::fprintf(stderr, "bits/dim %.3f +- %.3f (decoder %.3f, KL terms %.3f, prior %.2g)\n", b.total,
               b.standard_error, b.decoder, b.kl, b.prior);

  if (!args.sampling.classifier.empty()) {
    ddpm::nn::Classifier<Real> classifier = load_classifier(args.sampling.classifier);
    SampleArgs sampling = args.sampling;
    sampling.n = args.fid_n;
    sampling.classifier.clear();  // the classifier measures; it does not guide
    const ddpm::Batch<Real> samples = draw_samples(model, spec, sampling, common.seed, nullptr);
    const auto features = [&](const ddpm::Batch<Real>& images) {
      ddpm::Batch<Real> all(images.rows(), classifier.config().feature_dim), part;
      for (ddpm::Index first = 0; first < images.rows(); first += 500) {
        const ddpm::Index count = std::min<ddpm::Index>(500, images.rows() - first);
        const std::vector<int> zeros(static_cast<std::size_t>(count), 0);
        classifier.features(images.middleRows(first, count), zeros, part);
        all.middleRows(first, count) = part;
      }
      return all;
    };
    const ddpm::Index n = std::min<ddpm::Index>(args.fid_n, reference.images.rows() / 2);
    const ddpm::Batch<Real> real_a = features(reference.images.topRows(n));
    const ddpm::Batch<Real> real_b = features(reference.images.middleRows(n, n));
    const double fd = ddpm::eval::frechet_distance(features(samples.topRows(n)), real_a);
    const double floor = ddpm::eval::frechet_distance(real_b, real_a);
    json << ",\n  \"classifier_frechet\": {\"n\": " << n << ", \"sampler\": \"" << sampling.sampler
         << "\", \"samples_vs_real\": " << number(fd)
         << ", \"real_vs_real_floor\": " << number(floor)
         << ", \"note\": \"Frechet distance of this project's classifier's penultimate features, "
            "not Inception FID\"}";
    std::fprintf(stderr,
                 "classifier-feature Frechet distance %.2f (real-vs-real floor %.2f, n=%lld)\n", fd,
                 floor, static_cast<long long>(n));
    write_grid(out / "eval_samples.png", samples.topRows(std::min<ddpm::Index>(64, samples.rows())),
               spec, 8);
  }
  json << "\n}\n";
  ddpm::io::write_file_atomically(out / "metrics.json", json.str());
  std::cout << json.str();
  return 0;
}

// ---- command line -----------------------------------------------------------------------------

void add_sample_options(CLI::App& app, SampleArgs& args) {
  app.add_option("--checkpoint", args.checkpoint, "model.ckpt written by train")->required();
  app.add_flag("--raw-weights", args.raw_weights, "sample with the trained weights, not their EMA");
  app.add_option("--sampler", args.sampler, "ddpm (ancestral, all T steps) or ddim")
      ->check(CLI::IsMember({"ddpm", "ddim"}))
      ->capture_default_str();
  app.add_option("--sample-steps", args.sample_steps,
                 "sampling steps on an evenly respaced schedule (default: 50 for ddim, T for ddpm)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--eta", args.eta, "DDIM eta (0: deterministic)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--label", args.label,
                 "class of every sample (-1: none; default: the classes in turn for a "
                 "class-conditional model)");
  app.add_option("--guidance", args.guidance,
                 "classifier-free guidance scale w: (1 + w) eps(x, y) - w eps(x)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--classifier", args.classifier,
                 "classifier.ckpt from train-classifier: classifier guidance (sample) or the "
                 "Frechet-distance features (eval)");
  app.add_option("--classifier-scale", args.classifier_scale, "classifier guidance scale s")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--chunk", args.chunk, "images per sampling batch (bounds memory)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ddpm-images: denoising diffusion on images (Fashion-MNIST by default) with a UNet: train, "
      "sample, eval (bits/dim, classifier-feature Frechet distance) and train-classifier."};
  app.require_subcommand(1);

  TrainArgs train_args;
  Common train_common, sample_common, eval_common, classifier_common;
  CLI::App* train_cmd =
      app.add_subcommand("train", "train the UNet; writes model.ckpt, loss.csv/png, samples.png");
  ModelSpec& spec = train_args.spec;
  train_cmd->add_option("--data", spec.data,
                        "training images: a folder of MNIST-format files (*-idx3-ubyte[.gz]), a "
                        ".npy array (N x H x W or N x C x H x W, uint8 or float in [-1, 1]), or a "
                        "folder of PNG/JPEG files (class subfolders give labels). Default: "
                        "Fashion-MNIST from the Debian package dataset-fashion-mnist");
  train_cmd->add_flag("--class-conditional", train_args.class_conditional,
                      "condition on the labels (classifier-free guidance at sampling)");
  train_cmd
      ->add_option("--label-dropout", train_args.label_dropout,
                   "probability a label is dropped in training (classifier-free guidance)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  train_cmd->add_option("--steps", train_args.steps, "optimizer steps")
      ->check(CLI::Range(1, 100000000))
      ->capture_default_str();
  train_cmd
      ->add_option("--minutes", train_args.minutes,
                   "stop after this much wall time (0: no limit), checkpointing as at the end")
      ->check(CLI::NonNegativeNumber);
  train_cmd->add_option("--batch", train_args.batch, "batch size")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  train_cmd->add_option("--lr", train_args.lr, "Adam learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  train_cmd->add_option("--warmup", train_args.warmup, "learning-rate warm-up steps")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  train_cmd->add_option("--decay", train_args.decay, "cosine, linear or constant")
      ->check(CLI::IsMember({"cosine", "linear", "constant"}))
      ->capture_default_str();
  train_cmd->add_option("--grad-clip", train_args.grad_clip, "global gradient-norm clip (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  train_cmd->add_option("--ema", train_args.ema, "EMA decay (0: off)")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  train_cmd->add_option("--flip", train_args.flip, "random horizontal flips")
      ->capture_default_str();
  train_cmd->add_option("--resume", train_args.resume, "continue from this checkpoint");
  train_cmd
      ->add_option("--checkpoint-every", train_args.checkpoint_every,
                   "steps between checkpoints (0: only at the end)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  train_cmd
      ->add_option("--preview", train_args.preview,
                   "DDIM-50 samples drawn at the end into samples.png (0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  train_cmd->add_option("--schedule", spec.schedule, "linear or cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  train_cmd->add_option("--T", spec.num_timesteps, "diffusion steps")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  train_cmd->add_option("--output", spec.output, "eps, x0 or v")
      ->check(CLI::IsMember({"eps", "x0", "v"}))
      ->capture_default_str();
  train_cmd->add_option("--variance", spec.variance, "fixed-small, fixed-large or learned-range")
      ->check(CLI::IsMember({"fixed-small", "fixed-large", "learned-range"}))
      ->capture_default_str();
  train_cmd->add_option("--loss", spec.loss, "simple, hybrid (learned variance) or kl")
      ->check(CLI::IsMember({"simple", "hybrid", "kl"}))
      ->capture_default_str();
  train_cmd->add_option("--base", spec.base, "UNet base channels")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  train_cmd->add_option("--mult", spec.mult, "channel multiplier per level")->capture_default_str();
  train_cmd->add_option("--res-blocks", spec.res_blocks, "ResBlocks per level")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  train_cmd->add_option("--attention", spec.attention,
                        "image sides with attention after every ResBlock, e.g. 14,7 (the middle "
                        "always has attention)");
  train_cmd->add_option("--heads", spec.heads, "attention heads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  train_cmd->add_option("--dropout", spec.dropout, "ResBlock dropout")
      ->check(CLI::Range(0.0, 0.99))
      ->capture_default_str();
  train_cmd->add_flag("--scale-shift", spec.scale_shift,
                      "inject the time embedding as a GroupNorm scale and shift");
  add_common_options(*train_cmd, train_common);

  SampleArgs sample_args;
  std::string png_dir;
  CLI::App* sample_cmd = app.add_subcommand(
      "sample", "sample images; writes samples.png, trajectory.png and samples.npy (uint8)");
  add_sample_options(*sample_cmd, sample_args);
  sample_cmd->add_option("--n", sample_args.n, "number of samples")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  sample_cmd->add_option("--png-dir", png_dir, "also write one PNG per sample into this folder");
  add_common_options(*sample_cmd, sample_common);

  EvalArgs eval_args;
  CLI::App* eval_cmd = app.add_subcommand(
      "eval",
      "bits/dim on held-out images and, with --classifier, the classifier-feature Frechet "
      "distance of samples; writes metrics.json");
  add_sample_options(*eval_cmd, eval_args.sampling);
  eval_cmd->add_option("--bound-n", eval_args.bound_n, "held-out images for bits/dim")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  eval_cmd
      ->add_option("--bound-stride", eval_args.bound_stride,
                   "KL terms at every k-th timestep, scaled by k (1: the exact bound)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  eval_cmd->add_option("--fid-n", eval_args.fid_n, "samples (and real images) for the distance")
      ->check(CLI::Range(2, 100000))
      ->capture_default_str();
  add_common_options(*eval_cmd, eval_common);

  ClassifierArgs classifier_args;
  CLI::App* classifier_cmd = app.add_subcommand(
      "train-classifier",
      "train the noisy-image classifier (guidance, Frechet-distance features); writes "
      "classifier.ckpt");
  classifier_cmd->add_option("--data", classifier_args.data, "labeled images (as train --data)");
  classifier_cmd->add_option("--steps", classifier_args.steps, "Adam steps")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  classifier_cmd->add_option("--batch", classifier_args.batch, "batch size")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  classifier_cmd->add_option("--lr", classifier_args.lr, "Adam learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  classifier_cmd->add_option("--T", classifier_args.T, "diffusion steps of the noise it sees")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  classifier_cmd
      ->add_option("--clean-fraction", classifier_args.clean_fraction,
                   "fraction of training inputs at t = 0")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  classifier_cmd->add_option("--base", classifier_args.base, "base channels")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  classifier_cmd->add_option("--mult", classifier_args.mult, "channel multiplier per level")
      ->capture_default_str();
  add_common_options(*classifier_cmd, classifier_common);

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train_cmd) {
      set_threads(train_common.threads);
      return train(train_args, train_common);
    }
    if (*sample_cmd) {
      set_threads(sample_common.threads);
      return sample(sample_args, sample_common, png_dir);
    }
    if (*eval_cmd) {
      set_threads(eval_common.threads);
      return eval(eval_args, eval_common);
    }
    set_threads(classifier_common.threads);
    return train_classifier(classifier_args, classifier_common);
  } catch (const std::exception& e) {
    std::cerr << "ddpm-images: " << e.what() << "\n";
    return 1;
  }
}
