// SPDX-License-Identifier: MIT
// Tests of data-parallel training (TrainerOptions::shards over a Communicator), with ranks as
// threads (thread_ranks.hpp): 1, 2 and 3 ranks end bitwise equal — weights, EMA, optimizer state,
// the importance sampler's history, dropout masks, labels — a run resumes on another rank count,
// and the sharded gradient is the whole batch's gradient up to rounding.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "conditional_unet.hpp"
#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/nn/classifier.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/train/trainer.hpp"
#include "thread_ranks.hpp"

namespace sharded_trainer_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::test::ThreadGroup;

ddpm::nn::MlpConfig mlp_config() {
  ddpm::nn::MlpConfig config;
  config.width = 32;
  config.depth = 2;
  config.embedding_dim = 16;
  config.output_dim = 4;  // a learned variance
  config.seed = 3;
  return config;
}

const ddpm::GaussianDiffusion<float>& hybrid_diffusion() {
  static const ddpm::GaussianDiffusion<float> diffusion(
      ddpm::NoiseSchedule::cosine(40),
      {.variance = ddpm::VarianceKind::learned_range, .loss = ddpm::LossKind::hybrid});
  return diffusion;
}

ddpm::train::TrainerOptions mlp_options(Index shards) {
  // Importance sampling warms up after 400 losses (T = 40): by step 8 of 64 its history steers
  // the draws, so the gathered per-row bounds must be exact on every rank.
  return {.batch_size = 64,
          .steps = 14,
          .adam = {.learning_rate = 2e-3},
          .warmup_steps = 3,
          .decay = ddpm::optim::LrDecay::cosine,
          .grad_clip = 1.0,
          .ema_decay = 0.9,
          .timesteps = ddpm::train::TimestepSampling::importance,
          .shards = shards,
          .seed = 5};
}

struct ToyData {
  void operator()(std::int64_t step, Index n, Batch<float>& out) const {
    out = ddpm::data::sample_toy2d<float>(ddpm::data::ToyDataset::eight_gaussians, n, 11, step * n);
  }
};

const std::string kArchitecture = "test-mlp";

// Trains `steps` steps on `ranks` thread ranks (optionally from a checkpoint) and returns rank 0's
// serialized checkpoint after checking every rank's is the same; `losses` gets rank 0's losses.
std::string train_on_ranks(int ranks, Index shards, int steps,
                           const ddpm::train::Checkpoint* from = nullptr,
                           std::vector<double>* losses = nullptr) {
  std::mutex mutex;
  std::map<int, std::string> states;
  ThreadGroup::run(ranks, [&](ddpm::Communicator& comm) {
    ddpm::nn::Mlp<float> model(mlp_config());
    ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> trainer(model, hybrid_diffusion(),
                                                              mlp_options(shards), comm);
    if (from) trainer.restore(*from, kArchitecture);
    std::vector<double> mine;
    for (int i = 0; i < steps; ++i) mine.push_back(trainer.step(ToyData{}).loss);
    const std::string state = trainer.checkpoint(kArchitecture).serialize();
    const std::lock_guard lock(mutex);
    states[comm.rank()] = state;
    if (comm.rank() == 0 && losses) *losses = mine;
  });
  for (const auto& [rank, state] : states) {
    CAPTURE(rank);
    CHECK(state == states.at(0));
  }
  return states.at(0);
}

}  // namespace

TEST_CASE("sharded training is bitwise the same on 1, 2 and 3 ranks") {
  std::vector<double> one_losses, three_losses;
  const std::string one = train_on_ranks(1, 6, 14, nullptr, &one_losses);
  CHECK(train_on_ranks(2, 6, 14) == one);
  CHECK(train_on_ranks(3, 6, 14, nullptr, &three_losses) == one);
  CHECK(three_losses == one_losses);
  // The shards, unlike the ranks, are part of the run: another split is another (close) run.
  CHECK(train_on_ranks(1, 4, 14) != one);
}

TEST_CASE("a sharded run resumes bitwise on a different number of ranks") {
  const std::string straight = train_on_ranks(1, 6, 14);
  const ddpm::train::Checkpoint half =
      ddpm::train::Checkpoint::parse(train_on_ranks(2, 6, 7), "half");
  CHECK(half.get("train.shards") == "6");
  CHECK(train_on_ranks(3, 6, 7, &half) == straight);
}

TEST_CASE("the sharded gradient is the whole batch's gradient up to rounding") {
  // One step each from the same weights, no clipping: the summed shard gradients (each scaled by
  // its share of the batch) against the single pass, through the first Adam moment m = 0.1 g.
  auto options = mlp_options(1);
  options.grad_clip = 0.0;
  options.timesteps = ddpm::train::TimestepSampling::uniform;
  ddpm::nn::Mlp<float> whole_model(mlp_config());
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> whole(whole_model, hybrid_diffusion(), options);
  const ddpm::train::StepStats whole_step = whole.step(ToyData{});
  const ddpm::train::Checkpoint whole_state = whole.checkpoint(kArchitecture);
  for (const Index shards : {2, 5, 64}) {
    options.shards = shards;
    ddpm::nn::Mlp<float> sharded_model(mlp_config());
    ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> sharded(sharded_model, hybrid_diffusion(),
                                                              options);
    const ddpm::train::StepStats sharded_step = sharded.step(ToyData{});
    CAPTURE(shards);
    CHECK(sharded_step.loss == doctest::Approx(whole_step.loss).epsilon(1e-5));
    CHECK(sharded_step.grad_norm == doctest::Approx(whole_step.grad_norm).epsilon(1e-5));
    const auto& a = whole_state.tensor("adam.m").real;
    const ddpm::train::Checkpoint sharded_state = sharded.checkpoint(kArchitecture);
    const auto& b = sharded_state.tensor("adam.m").real;
    REQUIRE(a.size() == b.size());
    double largest = 0.0, worst = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      largest = std::max(largest, std::abs(a[i]));
      worst = std::max(worst, std::abs(a[i] - b[i]));
    }
    CHECK(worst <= 1e-5 * largest);
    CHECK(sharded.last_loss().vlb.size() == 64);
  }
}

TEST_CASE("a class-conditional UNet with dropout trains bitwise alike on 1 and 3 ranks") {
  ddpm::nn::UNetConfig config = ddpm::test::conditional_unet_config();
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(50));
  const ddpm::train::TrainerOptions options{
      .batch_size = 7, .steps = 5, .ema_decay = 0.9, .label_dropout = 0.3, .shards = 3, .seed = 7};
  const auto data = ddpm::test::labeled_noise_images;
  std::mutex mutex;
  std::map<int, std::string> by_ranks;
  for (const int ranks : {1, 3}) {
    ThreadGroup::run(ranks, [&](ddpm::Communicator& comm) {
      ddpm::nn::UNet<float> model(config);
      ddpm::train::Trainer<float, ddpm::nn::UNet<float>> trainer(model, diffusion, options, comm);
      for (int i = 0; i < 5; ++i) trainer.step(data);
      const std::string state = trainer.checkpoint("test-unet").serialize();
      const std::lock_guard lock(mutex);
      if (comm.rank() == 0) by_ranks[ranks] = state;
    });
  }
  CHECK(by_ranks.at(3) == by_ranks.at(1));
}

TEST_CASE("sharded options are checked against the batch and the ranks") {
  ddpm::nn::Mlp<float> model(mlp_config());
  auto options = mlp_options(65);
  CHECK_THROWS_WITH_AS(
      (ddpm::train::Trainer<float, ddpm::nn::Mlp<float>>(model, hybrid_diffusion(), options)),
      doctest::Contains("shards = 65; allowed: 1 (the ranks) .. 64"), ddpm::InvalidArgument);
  options.shards = 2;
  ThreadGroup::run(3, [&](ddpm::Communicator& comm) {
    ddpm::nn::Mlp<float> local(mlp_config());
    CHECK_THROWS_WITH_AS((ddpm::train::Trainer<float, ddpm::nn::Mlp<float>>(
                             local, hybrid_diffusion(), options, comm)),
                         doctest::Contains("shards = 2; allowed: 3 (the ranks)"),
                         ddpm::InvalidArgument);
  });
}

TEST_CASE("a non-finite loss on one rank's shard stops every rank at the same step") {
  std::mutex mutex;
  std::vector<std::string> messages;
  ThreadGroup::run(2, [&](ddpm::Communicator& comm) {
    ddpm::nn::Mlp<float> model(mlp_config());
    ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> trainer(model, hybrid_diffusion(),
                                                              mlp_options(4), comm);
    const auto data = [](std::int64_t step, Index n, Batch<float>& out) {
      ToyData{}(step, n, out);
      if (step == 2) out(n - 1, 0) = std::numeric_limits<float>::quiet_NaN();  // rank 1's rows
    };
    try {
      for (int i = 0; i < 4; ++i) trainer.step(data);
    } catch (const ddpm::NonFiniteError& e) {
      const std::lock_guard lock(mutex);
      messages.emplace_back(e.what());
    }
  });
  REQUIRE(messages.size() == 2);
  for (const std::string& m : messages)
    CHECK(m.find("training stopped at step 2: the loss is") != std::string::npos);
}

TEST_CASE("gather_rows assembles rows computed on different ranks") {
  std::mutex mutex;
  std::vector<Batch<double>> results;
  ThreadGroup::run(3, [&](ddpm::Communicator& comm) {
    Batch<double> rows = Batch<double>::Constant(8, 3, -1.0);  // others' rows: garbage to ignore
    const ddpm::ItemRange mine = ddpm::rank_share(comm, 8);
    for (Index i = mine.begin; i < mine.end; ++i) {
      for (Index j = 0; j < 3; ++j) rows(i, j) = std::ldexp(1.0 + i, -j * 400) * (j == 1 ? -1 : 1);
    }
    ddpm::gather_rows(comm, rows, mine);
    const std::lock_guard lock(mutex);
    results.push_back(rows);
  });
  for (const Batch<double>& rows : results) {
    for (Index i = 0; i < 8; ++i) {
      for (Index j = 0; j < 3; ++j)
        CHECK(rows(i, j) == std::ldexp(1.0 + i, -j * 400) * (j == 1 ? -1 : 1));
    }
  }
}

TEST_CASE("sample_labeled with ranks gives every rank all rows, bitwise as one process") {
  ddpm::nn::MlpConfig config = mlp_config();
  config.output_dim = 2;
  config.num_classes = 3;
  const ddpm::nn::Mlp<float> model(config);
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(100));
  const std::vector<int> labels = ddpm::sample_labels(23, ddpm::kClassesInTurn, 3);
  const ddpm::LabeledSampling options{
      .sampler = {.kind = ddpm::SamplerKind::ddim, .steps = 10}, .guidance = 1.5, .chunk = 4};
  ddpm::nn::Mlp<float> alone_model = model;
  const Batch<float> alone = ddpm::sample_labeled<float>(
      options, diffusion, alone_model, static_cast<ddpm::nn::Classifier<float>*>(nullptr), labels,
      2, ddpm::CounterRng(9));
  for (const int ranks : {2, 3}) {
    std::mutex mutex;
    std::vector<Batch<float>> gathered;
    ThreadGroup::run(ranks, [&](ddpm::Communicator& comm) {
      ddpm::nn::Mlp<float> local = model;
      ddpm::LabeledSampling shared = options;
      shared.ranks = &comm;
      Batch<float> rows = ddpm::sample_labeled<float>(
          shared, diffusion, local, static_cast<ddpm::nn::Classifier<float>*>(nullptr), labels, 2,
          ddpm::CounterRng(9));
      const std::lock_guard lock(mutex);
      gathered.push_back(std::move(rows));
    });
    for (const Batch<float>& rows : gathered) {
      CAPTURE(ranks);
      CHECK(rows == alone);
    }
  }
}

}  // namespace sharded_trainer_test
