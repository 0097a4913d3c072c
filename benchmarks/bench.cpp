// SPDX-License-Identifier: MIT
// ddpm-bench: the reference workloads of BENCHMARKS.md (ToyMLP train step at batch 256 and 4096,
// ancestral-1000 and DDIM-50 sampling of 10k points, and DDIM, Euler, Heun, DPM-Solver++ 2M and
// UniPC at about 20 network evaluations; UNetSmall train step and forward at batch 64; a
// point-cloud train step of Luo & Hu's model at 16 shapes x 2048 points), printed as one JSON
// object of medians.
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "../examples/common_options.hpp"
#include "CLI/CLI.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/point_cloud_model.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/optim/adam.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using ddpm::Batch;
using ddpm::Index;

// FLOP model (2 FLOP per multiply-add): one ToyMLP forward is 66*256 + 2*256*256 + 256*2 =
// 148,480 multiply-adds per sample; one UNetSmall forward is 138,318,976 multiply-adds per image
// (its convolutions, linear layers and the two attention products; BENCHMARKS.md's ~276.6
// MFLOP). A train step counts the backward as 2x the forward (3x in all); a sampling step is one
// forward per point.
constexpr double kToyMlpForwardFlop = 2.0 * (66.0 * 256 + 2.0 * 256 * 256 + 256.0 * 2);
constexpr double kUNetSmallForwardFlop = 2.0 * 138318976.0;
// The default PointCloudModel per point: decoder 3*128 + 128*256 + 256*512 + 512*256 + 256*128 +
// 128*3 = 328,448 multiply-adds, encoder 3*128 + 128*128 + 128*256 + 256*512 = 180,608 (the
// per-shape context and head products are negligible); a train step again counts as 3x.
constexpr double kPointCloudForwardFlop = 2.0 * (328448.0 + 180608.0);

struct Sizes {
  Index train_small = 256;
  Index train_large = 4096;
  Index points = 10000;
  Index unet_batch = 64;
  Index shapes = 16;
  Index points_per_shape = 2048;
};

struct Measurement {
  std::string key;    // JSON key of the median time, with its unit
  std::string stem;   // key without the unit, for the GFLOP/s key
  double median = 0;  // in the key's unit
  double gflops = 0;  // implied by the median
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double seconds_of(const std::function<void()>& work) {
  const auto start = std::chrono::steady_clock::now();
  work();
  const auto stop = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(stop - start).count();
}

/// One training step as a user's loop would run it: draw t and noise, q_sample, predict, the
/// L_simple loss and its gradient, backward, Adam.
template <class Model>
class TrainStep {
 public:
  template <class Config>
  TrainStep(const Config& config, double learning_rate, Index batch)
      : model_(config),
        diffusion_(ddpm::NoiseSchedule::linear(1000)),
        adam_({.learning_rate = learning_rate}),
        rng_(7),
        t_(static_cast<std::size_t>(batch)) {
    x0_.resize(batch, model_.input_dim());
    rng_.fill_normal(x0_, ddpm::stream::user, 0, 0);
  }

  [[nodiscard]] Index batch() const noexcept { return x0_.rows(); }

  void run() {
    const auto step = static_cast<std::uint32_t>(count_++);
    for (std::size_t i = 0; i < t_.size(); ++i) {
      t_[i] = static_cast<int>(
          rng_.uniform_int(ddpm::stream::user + 1, static_cast<std::uint32_t>(i), step, 1000));
    }
    noise_.resize(x0_.rows(), x0_.cols());
    rng_.fill_normal(noise_, ddpm::stream::forward_noise, 0, step);
    diffusion_.q_sample(x0_, t_, noise_, x_t_);
    model_.predict(x_t_, std::span<const int>(t_), out_);
    diffusion_.training_loss(out_, x0_, x_t_, noise_, t_, loss_, grad_);
    model_.zero_grad();
    model_.backward(grad_);
    adam_.step(model_.parameters());
  }

 private:
  Model model_;
  ddpm::GaussianDiffusion<float> diffusion_;
  ddpm::optim::Adam<float> adam_;
  ddpm::CounterRng rng_;
  Batch<float> x0_, noise_, x_t_, out_, grad_;
  std::vector<int> t_;
  ddpm::TrainingLoss<float> loss_;
  std::int64_t count_ = 0;
};

/// One training step of the point-cloud model as the Trainer runs it (timestep_group = N): one
/// t per shape, noise, q_sample, encode_clean (encoder + reparameterization), predict, the
/// L_simple loss and its gradient, backward (decoder, encoder, KL), Adam.
class PointCloudTrainStep {
 public:
  PointCloudTrainStep(Index shapes, Index points_per_shape)
      : model_(config(points_per_shape), ddpm::NoiseSchedule::linear(100).betas()),
        diffusion_(ddpm::NoiseSchedule::linear(100)),
        adam_({.learning_rate = 2e-3}),
        rng_(7),
        t_(static_cast<std::size_t>(shapes * points_per_shape)) {
    // Points on a unit sphere, as a stand-in for a shape data set.
    x0_.resize(shapes * points_per_shape, 3);
    rng_.fill_normal(x0_, ddpm::stream::user, 0, 0);
    x0_.rowwise().normalize();
  }

  [[nodiscard]] Index points() const noexcept { return x0_.rows(); }

  void run() {
    const auto step = static_cast<std::uint32_t>(count_++);
    const Index n = model_.points_per_shape();
    for (std::size_t i = 0; i < t_.size(); ++i) {
      const auto shape = static_cast<std::uint32_t>(static_cast<Index>(i) / n);
      t_[i] = static_cast<int>(rng_.uniform_int(ddpm::stream::user + 1, shape, step, 100));
    }
    noise_.resize(x0_.rows(), 3);
    rng_.fill_normal(noise_, ddpm::stream::forward_noise, 0, step);
    diffusion_.q_sample(x0_, t_, noise_, x_t_);
    model_.encode_clean(x0_, rng_, step);
    model_.predict(x_t_, std::span<const int>(t_), out_);
    diffusion_.training_loss(out_, x0_, x_t_, noise_, t_, loss_, grad_);
    model_.zero_grad();
    model_.backward(grad_);
    adam_.step(model_.parameters());
  }

 private:
  static ddpm::nn::PointCloudModelConfig config(Index points_per_shape) {
    ddpm::nn::PointCloudModelConfig c;
    c.points_per_shape = points_per_shape;
    c.seed = 1;
    return c;
  }

  ddpm::nn::PointCloudModel<float> model_;
  ddpm::GaussianDiffusion<float> diffusion_;
  ddpm::optim::Adam<float> adam_;
  ddpm::CounterRng rng_;
  Batch<float> x0_, noise_, x_t_, out_, grad_;
  std::vector<int> t_;
  ddpm::TrainingLoss<float> loss_;
  std::int64_t count_ = 0;
};

// Timed steps per train or network-forward "run": a step is short, so each run times this many
// steps one by one and the median is over all of them.
constexpr int kTrainStepsPerRun = 20;

/// Median time of `repeats * kTrainStepsPerRun` calls of `work` after `warm_up` untimed ones.
double median_step_seconds(const std::function<void()>& work, int warm_up, int repeats) {
  for (int i = 0; i < warm_up; ++i) work();  // workspaces, Adam state, caches
  std::vector<double> times;
  for (int r = 0; r < repeats * kTrainStepsPerRun; ++r) times.push_back(seconds_of(work));
  return median(times);
}

template <class Model>
Measurement bench_train(const std::string& stem, TrainStep<Model> step, double forward_flop,
                        int repeats) {
  const double s = median_step_seconds([&] { step.run(); }, 5, repeats);
  const double flop = 3.0 * forward_flop * static_cast<double>(step.batch());
  return {stem + "_ms", stem, 1e3 * s, flop / s * 1e-9};
}

Measurement bench_point_train(const std::string& stem, Index shapes, Index points, int repeats) {
  PointCloudTrainStep step(shapes, points);
  const double s = median_step_seconds([&] { step.run(); }, 3, repeats);
  const double flop = 3.0 * kPointCloudForwardFlop * static_cast<double>(step.points());
  return {stem + "_ms", stem, 1e3 * s, flop / s * 1e-9};
}

/// model.predict at `batch` in inference mode: the network cost of one sampling step.
Measurement bench_unet_forward(const std::string& stem, Index batch, int repeats) {
  ddpm::nn::UNet<float> model(ddpm::nn::unet_small_config(1));
  model.set_training(false);
  const ddpm::CounterRng rng(11);
  Batch<float> x(batch, model.input_dim()), out;
  rng.fill_normal(x, ddpm::stream::user, 0, 0);
  std::vector<int> t(static_cast<std::size_t>(batch));
  for (std::size_t i = 0; i < t.size(); ++i) {
    t[i] = static_cast<int>(
        rng.uniform_int(ddpm::stream::user + 1, static_cast<std::uint32_t>(i), 0, 1000));
  }
  const double s =
      median_step_seconds([&] { model.predict(x, std::span<const int>(t), out); }, 3, repeats);
  return {stem + "_ms", stem, 1e3 * s,
          kUNetSmallForwardFlop * static_cast<double>(batch) / s * 1e-9};
}

template <class Sampler>
Measurement bench_sampler(const std::string& stem, Sampler sampler, Index points, int repeats) {
  ddpm::nn::Mlp<float> model(ddpm::nn::toy_mlp_config(1));
  model.set_training(false);
  const ddpm::CounterRng rng(11);
  // Warm-up: size the model's inference workspaces and the sampler's at this batch.
  {
    Batch<float> x(points, 2), eps, next;
    rng.fill_normal(x, ddpm::stream::user, 0, 0);
    const std::vector<int> t(static_cast<std::size_t>(points), sampler.schedule().timestep(0));
    model.predict(x, std::span<const int>(t), eps);
    sampler.step(eps, sampler.schedule().timestep(0), x, next, rng);
  }
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    Batch<float> x;
    times.push_back(seconds_of([&] { x = sampler.sample(model, points, 2, rng); }));
  }
  const double s = median(times);
  const double flop = kToyMlpForwardFlop * static_cast<double>(points) * sampler.schedule().size();
  return {stem + "_s", stem, s, flop / s * 1e-9};
}

/// Sampling `points` ToyMLP samples with a sampler of the full linear T = 1000 diffusion chosen by
/// spec (ddpm::sample): the solvers' work beside the network is a few vector operations per level,
/// so the time should be NFE x one forward, as for DDIM at the same NFE.
Measurement bench_spec(const std::string& stem, const ddpm::SamplerSpec& spec, Index points,
                       int repeats) {
  ddpm::nn::Mlp<float> model(ddpm::nn::toy_mlp_config(1));
  model.set_training(false);
  const ddpm::CounterRng rng(11);
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(1000));
  // Warm-up: size the model's inference workspaces at this batch (real t, as the solvers feed).
  {
    Batch<float> x(points, 2), out;
    rng.fill_normal(x, ddpm::stream::user, 0, 0);
    const std::vector<double> t(static_cast<std::size_t>(points), 500.25);
    model.predict(x, std::span<const double>(t), out);
  }
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    Batch<float> x;
    times.push_back(seconds_of([&] { x = ddpm::sample(spec, diffusion, model, points, 2, rng); }));
  }
  const double s = median(times);
  const double flop = kToyMlpForwardFlop * static_cast<double>(points) *
                      spec.network_evaluations(diffusion.num_timesteps());
  return {stem + "_s", stem, s, flop / s * 1e-9};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ddpm-bench: the ToyMLP and UNetSmall reference workloads of BENCHMARKS.md; prints one "
      "JSON object of medians (and the GFLOP/s they imply: 2 FLOP per multiply-add, 148,480 "
      "(ToyMLP), 138,318,976 (UNetSmall) or 509,056 (point-cloud model, per point) multiply-adds "
      "per sample forward, a train step = 3x forward)."};
  int threads = 0;
  int repeats = 5;
  std::string only;
  bool small = false;
  app.add_option("--threads", threads, "threads (OpenMP and Eigen); default: OpenMP's default")
      ->check(ddpm_examples::thread_count());  // 1..4 x hardware threads (at most 1024)
  app.add_option("--repeats", repeats,
                 "timed runs per sampling workload after warm-up; train and UNet forward "
                 "workloads time 20 steps per run")
      ->check(CLI::PositiveNumber);
  app.add_option("--only", only,
                 "comma-separated keys (e.g. toy_train_b256_ms,toy_ddim50_n10000_s); default all");
  app.add_flag("--small", small,
               "tiny sizes for a seconds-long smoke run (ToyMLP batches 32/128, 64 points; UNet "
               "batch 2; 2 point clouds of 64 points); same keys");
  CLI11_PARSE(app, argc, argv);

#ifdef _OPENMP
  if (threads > 0) omp_set_num_threads(threads);
  threads = omp_get_max_threads();
#else
  threads = 1;
#endif
  Eigen::setNbThreads(threads);

  Sizes sizes;
  if (small) sizes = {32, 128, 64, 2, 2, 64};

  // Samplers at (about) 20 network evaluations on their default grids (DDIM: evenly spaced
  // timesteps, the solvers: Karras levels): the key names the NFE (Heun: 10 steps, 19).
  using ddpm::SamplerKind;
  const std::vector<std::pair<std::string, ddpm::SamplerSpec>> at_20_nfe = {
      {"toy_ddim_nfe20_n10000", {.kind = SamplerKind::ddim, .steps = 20}},
      {"toy_euler_nfe20_n10000", {.kind = SamplerKind::euler, .steps = 20}},
      {"toy_heun_nfe19_n10000", {.kind = SamplerKind::heun, .steps = 10}},
      {"toy_dpmpp2m_nfe20_n10000", {.kind = SamplerKind::dpmpp_2m, .steps = 20}},
      // The same solver on training timesteps (integral t): separates the solver's own cost from
      // the network's real-t time embedding on continuous (Karras) levels.
      {"toy_dpmpp2m_trailing_nfe20_n10000",
       {.kind = SamplerKind::dpmpp_2m, .grid = ddpm::GridKind::trailing, .steps = 20}},
      {"toy_unipc_nfe20_n10000", {.kind = SamplerKind::unipc, .steps = 20}}};
  std::vector<std::string> all = {
      "toy_train_b256_ms", "toy_train_b4096_ms",  "toy_ddpm1000_n10000_s",   "toy_ddim50_n10000_s",
      "unet_train_b64_ms", "unet_forward_b64_ms", "point_train_s16_n2048_ms"};
  for (const auto& [stem, spec] : at_20_nfe) all.push_back(stem + "_s");
  std::set<std::string> wanted;
  if (only.empty()) {
    wanted.insert(all.begin(), all.end());
  } else {
    std::stringstream list(only);
    std::string key;
    while (std::getline(list, key, ',')) {
      if (std::find(all.begin(), all.end(), key) == all.end()) {
        std::cerr << "ddpm-bench: unknown key '" << key << "' in --only; known keys:";
        for (const std::string& k : all) std::cerr << ' ' << k;
        std::cerr << '\n';
        return 2;
      }
      wanted.insert(key);
    }
  }

  const ddpm::NoiseSchedule linear = ddpm::NoiseSchedule::linear(1000);
  std::vector<Measurement> results;
  using ddpm::nn::Mlp;
  using ddpm::nn::UNet;
  const ddpm::nn::MlpConfig toy = ddpm::nn::toy_mlp_config(1);
  if (wanted.contains("toy_train_b256_ms")) {
    results.push_back(bench_train("toy_train_b256",
                                  TrainStep<Mlp<float>>(toy, 1e-3, sizes.train_small),
                                  kToyMlpForwardFlop, repeats));
  }
  if (wanted.contains("toy_train_b4096_ms")) {
    results.push_back(bench_train("toy_train_b4096",
                                  TrainStep<Mlp<float>>(toy, 1e-3, sizes.train_large),
                                  kToyMlpForwardFlop, repeats));
  }
  if (wanted.contains("toy_ddpm1000_n10000_s")) {
    results.push_back(
        bench_sampler("toy_ddpm1000_n10000",
                      ddpm::AncestralSampler<float>{ddpm::GaussianDiffusion<float>(linear)},
                      sizes.points, repeats));
  }
  if (wanted.contains("toy_ddim50_n10000_s")) {
    results.push_back(bench_sampler(
        "toy_ddim50_n10000",
        ddpm::DdimSampler<float>{ddpm::GaussianDiffusion<float>(linear.respaced("evenly 50")), 0.0},
        sizes.points, repeats));
  }
  for (const auto& [stem, spec] : at_20_nfe) {
    if (wanted.contains(stem + "_s")) {
      results.push_back(bench_spec(stem, spec, sizes.points, repeats));
    }
  }
  if (wanted.contains("unet_train_b64_ms")) {
    results.push_back(
        bench_train("unet_train_b64",
                    TrainStep<UNet<float>>(ddpm::nn::unet_small_config(1), 2e-4, sizes.unet_batch),
                    kUNetSmallForwardFlop, repeats));
  }
  if (wanted.contains("unet_forward_b64_ms")) {
    results.push_back(bench_unet_forward("unet_forward_b64", sizes.unet_batch, repeats));
  }
  if (wanted.contains("point_train_s16_n2048_ms")) {
    results.push_back(
        bench_point_train("point_train_s16_n2048", sizes.shapes, sizes.points_per_shape, repeats));
  }

  std::printf("{\"implementation\": \"ddpm\", \"threads\": %d, \"repeats\": %d, \"small\": %s",
              threads, repeats, small ? "true" : "false");
  std::printf(", \"train_steps_per_repeat\": %d", kTrainStepsPerRun);
  std::printf(
      ", \"flop_model\": \"2 FLOP per multiply-add; forward 148480 MAC/sample (ToyMLP), "
      "138318976 MAC/image (UNetSmall), 509056 MAC/point (point-cloud model); train step = "
      "forward + backward (2x forward); sampling = 1 forward per point per step\"");
  for (const Measurement& m : results) {
    std::printf(", \"%s\": %.6g, \"%s_gflops\": %.4g", m.key.c_str(), m.median, m.stem.c_str(),
                m.gflops);
  }
  std::printf("}\n");
  return 0;
}
