// SPDX-License-Identifier: MIT
// Tests of the Trainer: resuming from a checkpoint is bitwise identical to not stopping, bad
// checkpoints and non-finite training are refused clearly, and a short run learns.
#include "ddpm/train/trainer.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <vector>

#include "conditional_unet.hpp"
#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/unet.hpp"

namespace trainer_test {

namespace {

using ddpm::Batch;
using ddpm::Index;

ddpm::nn::MlpConfig small_mlp() {
  ddpm::nn::MlpConfig config;
  config.width = 32;
  config.depth = 2;
  config.embedding_dim = 16;
  config.seed = 3;
  return config;
}

struct ToyData {
  ddpm::data::ToyDataset dataset = ddpm::data::ToyDataset::eight_gaussians;
  std::uint64_t seed = 11;
  void operator()(std::int64_t step, Index n, Batch<float>& out) const {
    out = ddpm::data::sample_toy2d<float>(dataset, n, seed, step * n);
  }
};

template <class Model>
std::vector<float> flat_parameters(Model& model) {
  const auto values = model.parameter_values();
  return {values.begin(), values.end()};
}

}  // namespace

TEST_CASE("a run resumed from a checkpoint continues bitwise identically") {
  // Importance sampling with T = 40 warms up after 400 losses, so its history is part of the
  // state by the time of the checkpoint (step 12 of batch 64 = 768 losses).
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::cosine(40);
  const ddpm::GaussianDiffusion<float> diffusion(
      schedule, {.variance = ddpm::VarianceKind::learned_range, .loss = ddpm::LossKind::hybrid});
  ddpm::nn::MlpConfig config = small_mlp();
  config.output_dim = 4;
  const ddpm::train::TrainerOptions options{.batch_size = 64,
                                            .steps = 24,
                                            .adam = {.learning_rate = 2e-3},
                                            .warmup_steps = 5,
                                            .decay = ddpm::optim::LrDecay::cosine,
                                            .grad_clip = 1.0,
                                            .ema_decay = 0.9,
                                            .timesteps = ddpm::train::TimestepSampling::importance,
                                            .seed = 5};
  const ToyData data;
  const std::string arch = "test-mlp w32 d2 out4";

  ddpm::nn::Mlp<float> straight(config);
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> uninterrupted(straight, diffusion, options);
  for (int i = 0; i < 24; ++i) uninterrupted.step(data);

  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / "ddpm_trainer_resume.ckpt";
  {
    ddpm::nn::Mlp<float> first_half(config);
    ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> trainer(first_half, diffusion, options);
    for (int i = 0; i < 12; ++i) trainer.step(data);
    trainer.checkpoint(arch).save(path);
  }
  ddpm::nn::MlpConfig other_seed = config;
  other_seed.seed = 99;  // different initial weights: everything must come from the file
  ddpm::nn::Mlp<float> resumed_model(other_seed);
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> resumed(resumed_model, diffusion, options);
  resumed.restore(ddpm::train::Checkpoint::load(path), arch);
  CHECK(resumed.step_count() == 12);
  for (int i = 0; i < 12; ++i) resumed.step(data);

  CHECK(flat_parameters(resumed_model) == flat_parameters(straight));
  {
    auto a = resumed.ema_weights();
    auto b = uninterrupted.ema_weights();
    CHECK(flat_parameters(resumed_model) == flat_parameters(straight));
  }
  CHECK(resumed.checkpoint(arch).serialize() == uninterrupted.checkpoint(arch).serialize());
  std::filesystem::remove(path);
}

TEST_CASE("a class-conditional UNet run with dropout and label dropout resumes bitwise") {
  // The dropout masks follow the step (the Trainer sets the model's draw) and label dropout is
  // drawn from (seed, step), so the state in the checkpoint is the whole state.
  ddpm::nn::UNetConfig config = ddpm::test::conditional_unet_config();
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(50));
  const ddpm::train::TrainerOptions options{
      .batch_size = 6, .steps = 8, .ema_decay = 0.9, .label_dropout = 0.3, .seed = 7};
  const auto data = ddpm::test::labeled_noise_images;
  const std::string arch = "test-unet";
  ddpm::nn::UNet<float> straight(config);
  ddpm::train::Trainer<float, ddpm::nn::UNet<float>> uninterrupted(straight, diffusion, options);
  for (int i = 0; i < 8; ++i) uninterrupted.step(data);

  ddpm::nn::UNet<float> first_half(config);
  ddpm::train::Trainer<float, ddpm::nn::UNet<float>> trainer(first_half, diffusion, options);
  for (int i = 0; i < 4; ++i) trainer.step(data);
  const ddpm::train::Checkpoint saved = trainer.checkpoint(arch);
  ddpm::nn::UNetConfig other_seed = config;
  other_seed.seed = 99;
  ddpm::nn::UNet<float> resumed_model(other_seed);
  ddpm::train::Trainer<float, ddpm::nn::UNet<float>> resumed(resumed_model, diffusion, options);
  resumed.restore(saved, arch);
  for (int i = 0; i < 4; ++i) resumed.step(data);
  CHECK(flat_parameters(resumed_model) == flat_parameters(straight));
  // Dropout and label dropout change the run: without them the weights differ.
  ddpm::nn::UNetConfig no_dropout = config;
  no_dropout.dropout = 0.0;
  ddpm::nn::UNet<float> plain(no_dropout);
  ddpm::train::Trainer<float, ddpm::nn::UNet<float>> plain_trainer(plain, diffusion, options);
  for (int i = 0; i < 8; ++i) plain_trainer.step(data);
  CHECK(flat_parameters(plain) != flat_parameters(straight));
}

TEST_CASE("restoring a checkpoint of another architecture or diffusion is refused") {
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(100));
  ddpm::nn::Mlp<float> model(small_mlp());
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> trainer(model, diffusion,
                                                            {.batch_size = 8, .steps = 2});
  trainer.step(ToyData{});
  const ddpm::train::Checkpoint saved = trainer.checkpoint("mlp w32");
  CHECK_THROWS_WITH_AS(trainer.restore(saved, "mlp w64"),
                       doctest::Contains("architecture mismatch"), ddpm::FormatError);
  const ddpm::GaussianDiffusion<float> other(ddpm::NoiseSchedule::linear(200));
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> other_trainer(model, other,
                                                                  {.batch_size = 8, .steps = 2});
  CHECK_THROWS_WITH_AS(other_trainer.restore(saved, "mlp w32"),
                       doctest::Contains("diffusion mismatch"), ddpm::FormatError);
  // Same name, different tensor sizes (a wider model described with the same words).
  ddpm::nn::MlpConfig wider = small_mlp();
  wider.width = 48;
  ddpm::nn::Mlp<float> wide_model(wider);
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> wide(wide_model, diffusion,
                                                         {.batch_size = 8, .steps = 2});
  CHECK_THROWS_AS(wide.restore(saved, "mlp w32"), ddpm::FormatError);
}

TEST_CASE("a non-finite loss stops training with a clear error and leaves the weights untouched") {
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(100));
  ddpm::nn::Mlp<float> model(small_mlp());
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> trainer(model, diffusion,
                                                            {.batch_size = 8, .steps = 10});
  trainer.step(ToyData{});
  const std::vector<float> before = flat_parameters(model);
  const auto poisoned = [](std::int64_t, Index n, Batch<float>& out) {
    out = Batch<float>::Zero(n, 2);
    out(3, 1) = std::numeric_limits<float>::quiet_NaN();
  };
  CHECK_THROWS_WITH_AS(trainer.step(poisoned), doctest::Contains("training stopped at step 1"),
                       ddpm::NonFiniteError);
  CHECK(flat_parameters(model) == before);
  CHECK(trainer.step_count() == 1);
}

TEST_CASE("bad trainer options are refused") {
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(100));
  ddpm::nn::Mlp<float> model(small_mlp());
  using Trainer = ddpm::train::Trainer<float, ddpm::nn::Mlp<float>>;
  CHECK_THROWS_WITH_AS(Trainer(model, diffusion, {.batch_size = 0}),
                       doctest::Contains("batch_size = 0"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(Trainer(model, diffusion, {.ema_decay = 1.0}),
                       doctest::Contains("ema_decay = 1"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(Trainer(model, diffusion, {.grad_clip = -1}), doctest::Contains("grad_clip"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::parse_enum<ddpm::train::TimestepSampling>("random"),
                       doctest::Contains("random"), ddpm::InvalidArgument);
}

TEST_CASE("a short training run on 8gaussians lowers the MMD clearly (smoke test of the loop)") {
  // 400 steps of batch 256 on a width-64 MLP take a few seconds. The untrained model's DDIM-50
  // samples are far from the data; after training the MMD^2 (1000 samples vs 1000 data points)
  // must fall below a third of the untrained value.
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  const ddpm::GaussianDiffusion<float> diffusion(schedule);
  ddpm::nn::MlpConfig config = small_mlp();
  config.width = 64;
  config.depth = 3;
  config.embedding_dim = 32;
  ddpm::nn::Mlp<float> model(config);
  ddpm::DdimSampler<float> sampler{ddpm::GaussianDiffusion<float>(schedule.respaced("ddim50"))};
  const Batch<double> data =
      ddpm::data::sample_toy2d<double>(ddpm::data::ToyDataset::eight_gaussians, 1000, 777);
  const auto mmd_of_samples = [&] {
    const Batch<float> x = sampler.sample(model, 1000, 2, ddpm::CounterRng(8));
    return ddpm::eval::mmd2_rbf(x.cast<double>(), data);
  };
  const double untrained = mmd_of_samples();
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> trainer(
      model, diffusion,
      {.batch_size = 256, .steps = 400, .adam = {.learning_rate = 2e-3}, .ema_decay = 0});
  double first_loss = 0, last_loss = 0;
  for (int i = 0; i < 400; ++i) {
    const ddpm::train::StepStats s = trainer.step(ToyData{});
    if (i == 0) first_loss = s.loss;
    last_loss = s.loss;
  }
  const double trained = mmd_of_samples();
  CAPTURE(untrained);
  CAPTURE(trained);
  CAPTURE(first_loss);
  CAPTURE(last_loss);
  CHECK(last_loss < first_loss);
  CHECK(trained < untrained / 3);
}

TEST_CASE(
    "run() writes checkpoints and the loss log, and keeps the last good checkpoint on failure") {
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(100));
  ddpm::nn::Mlp<float> model(small_mlp());
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> trainer(model, diffusion,
                                                            {.batch_size = 16, .steps = 30});
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "ddpm_trainer_run";
  std::filesystem::create_directories(dir);
  // Data that turns to NaN from step 25 on: checkpoints at steps 10 and 20 are written first.
  const auto data = [](std::int64_t step, Index n, Batch<float>& out) {
    out = ddpm::data::sample_toy2d<float>(ddpm::data::ToyDataset::moons, n, 1, step * n);
    if (step >= 25) out(0, 0) = std::numeric_limits<float>::infinity();
  };
  const ddpm::train::Trainer<float, ddpm::nn::Mlp<float>>::RunOptions run{
      .checkpoint = dir / "model.ckpt",
      .checkpoint_every = 10,
      .architecture = "mlp small",
      .loss_csv = dir / "loss.csv",
      .label = "test"};
  const std::string expected =
      "the last good checkpoint is " + (dir / "model.ckpt").string() + " (step 20)";
  CHECK_THROWS_WITH_AS(
      trainer.run(data, run, [](ddpm::train::Checkpoint& c) { c.set("note", "x"); }),
      doctest::Contains(expected.c_str()), ddpm::NonFiniteError);
  const ddpm::train::Checkpoint kept = ddpm::train::Checkpoint::load(dir / "model.ckpt");
  CHECK(kept.get("step") == "20");
  CHECK(kept.get("note") == "x");
  std::ifstream log(dir / "loss.csv");
  std::string line;
  int lines = 0;
  while (std::getline(log, line)) ++lines;
  CHECK(lines == 1 + 25);  // header and the 25 finite steps
  std::filesystem::remove_all(dir);
}

TEST_CASE("a respaced diffusion trains on its kept steps, passing their original timesteps") {
  // It used to pass step indices 0..T'-1 as original timesteps, and threw at the first one that
  // was not kept.
  struct Recorder {
    std::vector<float> weight = {0.5f}, weight_grad = {0.0f};
    std::vector<int> seen;
    void predict(const Batch<float>& x, std::span<const int> t, Batch<float>& out) {
      seen.insert(seen.end(), t.begin(), t.end());
      out = weight[0] * x;
      input = x;
    }
    void backward(const Batch<float>& grad_out) {
      weight_grad[0] += (grad_out.cwiseProduct(input)).sum();
    }
    void zero_grad() { weight_grad[0] = 0.0f; }
    std::vector<ddpm::ParameterBlock<float>> parameters() {
      return {{"w", std::span<float>(weight), std::span<float>(weight_grad)}};
    }
    Batch<float> input;
  };
  const ddpm::NoiseSchedule respaced = ddpm::NoiseSchedule::linear(100).respaced("evenly 10");
  const std::vector<int> kept = respaced.timesteps();
  for (const auto sampling :
       {ddpm::train::TimestepSampling::uniform, ddpm::train::TimestepSampling::importance}) {
    Recorder model;
    const ddpm::GaussianDiffusion<float> diffusion(
        respaced, {.variance = ddpm::VarianceKind::fixed_small, .loss = ddpm::LossKind::kl});
    ddpm::train::Trainer<float, Recorder> trainer(
        model, diffusion, {.batch_size = 64, .steps = 40, .timesteps = sampling});
    for (int i = 0; i < 40; ++i) trainer.step(ToyData{});
    std::vector<int> distinct = model.seen;
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    // 2560 uniform draws over 10 steps: every kept step appears, and nothing else.
    CHECK(distinct == kept);
  }
}

namespace {

// A linear model out = w x that records what the Trainer hands it; as an EncodingDenoiser it
// adds the auxiliary loss a w^2 (gradient 2 a w) of its own.
struct Encoding {
  static constexpr float a = 0.25f;
  std::vector<float> weight = {0.5f}, weight_grad = {0.0f};
  std::vector<int> seen;
  Batch<float> clean, input;
  int encodes = 0, predicts = 0;
  std::uint32_t encoded_step = 0;
  void encode_clean(const Batch<float>& x0, const ddpm::CounterRng&, std::uint32_t step) {
    clean = x0;
    encoded_step = step;
    ++encodes;
  }
  [[nodiscard]] double auxiliary_loss() const { return a * weight[0] * weight[0]; }
  void predict(const Batch<float>& x, std::span<const int> t, Batch<float>& out) {
    REQUIRE(encodes == predicts + 1);  // encode_clean came first, once
    ++predicts;
    seen.assign(t.begin(), t.end());
    out = weight[0] * x;
    input = x;
  }
  void backward(const Batch<float>& grad_out) {
    weight_grad[0] += (grad_out.cwiseProduct(input)).sum() + 2 * a * weight[0];
  }
  void zero_grad() { weight_grad[0] = 0.0f; }
  std::vector<ddpm::ParameterBlock<float>> parameters() {
    return {{"w", std::span<float>(weight), std::span<float>(weight_grad)}};
  }
};

}  // namespace

TEST_CASE("timestep groups share one draw, a self-encoding model sees each clean batch first") {
  static_assert(ddpm::EncodingDenoiser<Encoding, float>);
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(100));
  for (const auto sampling :
       {ddpm::train::TimestepSampling::uniform, ddpm::train::TimestepSampling::importance}) {
    Encoding model;
    ddpm::train::Trainer<float, Encoding> trainer(
        model, diffusion,
        {.batch_size = 64, .steps = 30, .timesteps = sampling, .timestep_group = 16});
    std::vector<int> firsts;
    for (int i = 0; i < 30; ++i) {
      const float w = model.weight[0];
      const ddpm::train::StepStats stats = trainer.step(ToyData{});
      CHECK(model.encoded_step == static_cast<std::uint32_t>(i));
      Batch<float> expected;
      ToyData{}(i, 64, expected);
      CHECK(model.clean == expected);
      CHECK(stats.loss == doctest::Approx(trainer.last_loss().mean + Encoding::a * w * w));
      for (std::size_t row = 0; row < model.seen.size(); ++row) {
        CHECK(model.seen[row] == model.seen[row - row % 16]);  // one timestep per group
      }
      for (std::size_t g = 0; g < 4; ++g) firsts.push_back(model.seen[16 * g]);
    }
    std::sort(firsts.begin(), firsts.end());
    firsts.erase(std::unique(firsts.begin(), firsts.end()), firsts.end());
    CHECK(firsts.size() > 30);  // 120 group draws over 100 timesteps: groups differ
  }
  Encoding model;
  const auto make = [&] {
    return ddpm::train::Trainer<float, Encoding>(model, diffusion,
                                                 {.batch_size = 64, .timestep_group = 5});
  };
  CHECK_THROWS_WITH_AS(make(), doctest::Contains("timestep_group = 5"), std::invalid_argument);
}

}  // namespace trainer_test
