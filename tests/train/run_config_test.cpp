// SPDX-License-Identifier: MIT
// Tests of RunConfig: the run description round-trips through a checkpoint for every option value,
// differences() names each changed field, and missing or malformed fields (or an old checkpoint)
// are FormatErrors naming the field.
#include "ddpm/train/run_config.hpp"

#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "ddpm/train/model_fields.hpp"

namespace run_config_test {

namespace {

using ddpm::FormatError;
using ddpm::train::Checkpoint;
using ddpm::train::MlpRun;
using ddpm::train::ScheduleConfig;
using ddpm::train::UNetRun;

MlpRun toy_run() {
  MlpRun run;
  run.diffusion.schedule = ScheduleConfig::linear(100);
  run.model = ddpm::nn::toy_mlp_config(3);
  run.model.width = 32;
  run.data.name = "moons";
  return run;
}

// Writes `run` into a checkpoint, serializes it and reads it back.
template <class Run>
Run round_trip(const Run& run) {
  Checkpoint c;
  run.to_checkpoint(c);
  return Run::from_checkpoint(Checkpoint::parse(c.serialize(), "memory.ckpt"));
}

// The run's checkpoint with one metadata field replaced (or removed when `text` is empty).
Checkpoint edited(const MlpRun& run, const std::string& key, const std::string& text) {
  Checkpoint c;
  run.to_checkpoint(c);
  Checkpoint out;
  for (const auto& [k, v] : c.metadata()) {
    if (k != key) out.set(k, v);
  }
  if (!text.empty()) out.set(key, text);
  out.put<double>("diffusion.betas", std::span<const double>(c.tensor("diffusion.betas").real));
  return Checkpoint::parse(out.serialize(), "edited.ckpt");
}

}  // namespace

TEST_CASE("a run round-trips through a checkpoint for every option value") {
  const MlpRun base = toy_run();
  CHECK(round_trip(base).fields().size() == base.fields().size());
  for (const ddpm::train::ScheduleKind kind :
       {ddpm::train::ScheduleKind::linear, ddpm::train::ScheduleKind::cosine,
        ddpm::train::ScheduleKind::custom}) {
    for (const auto output :
         {ddpm::ModelOutput::epsilon, ddpm::ModelOutput::x0, ddpm::ModelOutput::v}) {
      for (const auto& variance_and_loss :
           {std::pair{ddpm::VarianceKind::fixed_small, ddpm::LossKind::simple},
            std::pair{ddpm::VarianceKind::fixed_large, ddpm::LossKind::kl},
            std::pair{ddpm::VarianceKind::learned, ddpm::LossKind::hybrid},
            std::pair{ddpm::VarianceKind::learned_range, ddpm::LossKind::rescaled_kl}}) {
        // Plain locals, not a structured binding: clang 14 (the TSan build) cannot capture one.
        const ddpm::VarianceKind variance = variance_and_loss.first;
        const ddpm::LossKind loss = variance_and_loss.second;
        MlpRun run = base;
        run.diffusion.schedule =
            kind == ddpm::train::ScheduleKind::custom
                ? ScheduleConfig::custom({1e-4, 0.1 / 3.0, 0.5, 0.7})
                : ScheduleConfig{
                      .kind = kind, .num_timesteps = 50, .beta_start = 2e-4, .cosine_s = 0.01};
        run.diffusion.options = {.output = output,
                                 .variance = variance,
                                 .loss = loss,
                                 .decoder = loss == ddpm::LossKind::kl ? ddpm::Decoder::discretized
                                                                       : ddpm::Decoder::continuous,
                                 .clip_x0 = loss == ddpm::LossKind::kl,
                                 .rescale_hybrid = variance != ddpm::VarianceKind::learned};
        run.model.activation =
            loss == ddpm::LossKind::kl ? ddpm::nn::Activation::gelu : ddpm::nn::Activation::silu;
        run.model.residual = output == ddpm::ModelOutput::v;
        const MlpRun back = round_trip(run);
        CAPTURE(ddpm::to_string(kind));
        CAPTURE(ddpm::to_string(output));
        CAPTURE(ddpm::to_string(variance));
        CHECK(ddpm::train::differences(back, run).empty());
        CHECK(back.diffusion.schedule.make().betas() == run.diffusion.schedule.make().betas());
        CHECK(back.diffusion.options.loss == loss);
        CHECK(back.diffusion.options.decoder == run.diffusion.options.decoder);
        CHECK(back.diffusion.options.clip_x0 == run.diffusion.options.clip_x0);
        CHECK(back.diffusion.options.rescale_hybrid == run.diffusion.options.rescale_hybrid);
        CHECK(back.model.activation == run.model.activation);
      }
    }
  }
  SUBCASE("a respaced custom schedule keeps its exact betas and timesteps") {
    MlpRun run = base;
    run.diffusion.schedule = ScheduleConfig::custom({0.1, 1.0 / 7.0, 0.2, 0.3, 0.4});
    run.diffusion.schedule.respacing = {0, 2, 4};
    const ddpm::NoiseSchedule back = round_trip(run).diffusion.schedule.make();
    CHECK(back.betas() == run.diffusion.schedule.make().betas());
    CHECK(back.timesteps() == std::vector<int>{0, 2, 4});
  }
  SUBCASE("file data: path, rows, fingerprint, standardization and frame") {
    MlpRun run = base;
    ddpm::Batch<double> points(3, 2);
    points << 1, 2, 3, 4, 5, 7;
    run.data = {.name = "file",
                .path = "/data/points.csv",
                .rows = 3,
                .fingerprint = ddpm::train::data_fingerprint(points),
                .mean = {3.0, 13.0 / 3.0},
                .scale = {1.6329931618554521, 2.0548046676563256},
                .frame = {0.6, 5.4, 1.5, 7.5}};
    const MlpRun back = round_trip(run);
    CHECK(back.data.mean == run.data.mean);
    CHECK(back.data.scale == run.data.scale);
    CHECK(back.data.frame == run.data.frame);
    CHECK(back.data.fingerprint.size() == 8);
    CHECK(back.data.path == "/data/points.csv");
  }
  SUBCASE("a UNet run") {
    UNetRun run;
    run.model = ddpm::nn::unet_small_config();
    run.model.attention_resolutions = {14, 7};
    run.model.injection = ddpm::nn::EmbeddingInjection::scale_shift;
    run.model.dropout = 0.1;
    run.data = {
        .name = "fashion-mnist", .path = "/usr/share/datasets/fashion-mnist", .rows = 60000};
    const UNetRun back = round_trip(run);
    CHECK(ddpm::train::differences(back, run).empty());
    CHECK(back.model.channel_mult == run.model.channel_mult);
    CHECK(back.model.attention_resolutions == std::vector<ddpm::Index>{14, 7});
    CHECK(back.model.injection == ddpm::nn::EmbeddingInjection::scale_shift);
  }
}

TEST_CASE("differences() names every changed field, and require_same_run lists them all") {
  const MlpRun saved = toy_run();
  MlpRun run = saved;
  CHECK(ddpm::train::differences(saved, run).empty());
  run.diffusion.schedule = ScheduleConfig::cosine(100);
  run.data.name = "circles";
  run.model.width = 64;
  run.diffusion.options.clip_x0 = true;
  const std::vector<std::string> diff = ddpm::train::differences(saved, run);
  // The linear schedule's beta_start/beta_end and the cosine one's cosine_s/max_beta are not
  // listed: "diffusion.schedule" says the kinds differ.
  const std::vector<std::string> expected = {
      "diffusion.schedule: checkpoint linear, this run cosine",
      "diffusion.clip_x0: checkpoint false, this run true",
      "model.width: checkpoint 32, this run 64", "data.name: checkpoint moons, this run circles"};
  CHECK(diff == expected);
  CHECK_THROWS_WITH_AS(ddpm::train::require_same_run(saved, run, "model.ckpt", "use --init-from"),
                       doctest::Contains("cannot resume from 'model.ckpt': this run differs in 4 "
                                         "fields\n  diffusion.schedule: checkpoint linear, this "
                                         "run cosine"),
                       FormatError);
  SUBCASE("a moved data file is not a different run; different contents are") {
    MlpRun a = saved, b = saved;
    a.data.path = "/old/points.csv";
    b.data.path = "/new/points.csv";
    CHECK(ddpm::train::differences(a, b).empty());
    b.data.fingerprint = "0123abcd";
    CHECK(ddpm::train::differences(a, b) ==
          std::vector<std::string>{"data.fingerprint: checkpoint none, this run 0123abcd"});
  }
  SUBCASE("custom betas are compared value by value") {
    MlpRun a = saved, b = saved;
    a.diffusion.schedule = ScheduleConfig::custom({0.1, 0.2, 0.3});
    b.diffusion.schedule = ScheduleConfig::custom({0.1, 0.2, 0.4});
    CHECK(ddpm::train::differences(a, b) ==
          std::vector<std::string>{"diffusion.betas: differ from t = 2"});
  }
}

TEST_CASE("a missing or malformed field is a FormatError naming the file and the field") {
  const MlpRun run = toy_run();
  const auto check = [&](const std::string& key, const std::string& text,
                         const std::string& message) {
    CAPTURE(key);
    CHECK_THROWS_WITH_AS(MlpRun::from_checkpoint(edited(run, key, text)),
                         doctest::Contains(message.c_str()), FormatError);
  };
  check("model.width", "", "checkpoint 'edited.ckpt': field 'model.width' is missing");
  check("model.width", "wide", "field 'model.width' = 'wide' is not an integer in 1..");
  check("model.width", "0", "field 'model.width' = '0' is not an integer");
  check("model.activation", "swish", "field 'model.activation' = 'swish' is not one of");
  check("model.residual", "yes", "field 'model.residual' = 'yes' is not true or false");
  check("model.kind", "unet", "field 'model.kind' = 'unet': this program builds a 'mlp' model");
  check("diffusion.schedule", "quadratic", "field 'diffusion.schedule' = 'quadratic'");
  check("diffusion.loss", "", "field 'diffusion.loss' is missing");
  check("diffusion.beta_end", "nan", "field 'diffusion.beta_end' = 'nan' is not a finite number");
  check("diffusion.beta_end", "0.03", "field 'diffusion.betas' differ from the linear schedule");
  check("diffusion.T", "99", "field 'diffusion.betas' must hold diffusion.T = 99 real values");
  check("diffusion.respacing", "0,,2", "field 'diffusion.respacing' = '0,,2' is not a comma");
  check("diffusion.respacing", "5,2", "field 'diffusion.schedule' does not make a valid schedule");
  check("data.mean", "1,2", "field 'data.std' has not as many values as data.mean");
  check("data.frame", "1,2,3", "field 'data.frame' must hold 4 values");
  check("run.format", "ddpm run 0", "has run format 'ddpm run 0'");
  SUBCASE("no betas tensor") {
    const Checkpoint full = edited(run, "step", "");
    Checkpoint c;
    for (const auto& [k, v] : full.metadata()) c.set(k, v);
    CHECK_THROWS_WITH_AS(MlpRun::from_checkpoint(c),
                         doctest::Contains("no tensor 'diffusion.betas'"), FormatError);
  }
  SUBCASE("a checkpoint of the old format says so") {
    Checkpoint old;
    old.set("format", "ddpm trainer");
    old.set("toy2d.dataset", "moons");
    CHECK_THROWS_WITH_AS(MlpRun::from_checkpoint(Checkpoint::parse(old.serialize(), "old.ckpt")),
                         "ddpm: checkpoint 'old.ckpt' has no run description (its format is "
                         "'ddpm trainer'): it was written by an older version or by a Trainer "
                         "alone; train it again with this version",
                         FormatError);
  }
}

TEST_CASE("load_weights takes the EMA weights unless the raw ones are asked for") {
  ddpm::nn::MlpConfig config = ddpm::nn::toy_mlp_config(1);
  config.width = 4;
  config.depth = 1;
  config.embedding_dim = 4;
  ddpm::nn::Mlp<float> model(config), loaded(config);
  Checkpoint c;
  std::vector<double> shadow;
  for (const auto& block : model.parameters()) {
    c.put<float>("model." + block.name, std::span<const float>(block.value));
    for (const float v : block.value) shadow.push_back(2.0 * v);
  }
  c.put<double>("ema.shadow", std::span<const double>(shadow));
  ddpm::train::load_weights(c, loaded, ddpm::train::Weights::raw);
  CHECK(std::equal(loaded.parameter_values().begin(), loaded.parameter_values().end(),
                   model.parameter_values().begin()));
  ddpm::train::load_weights(c, loaded);
  CHECK(static_cast<double>(loaded.parameter_values()[5]) == shadow[5]);
  shadow.pop_back();
  c.put<double>("ema.shadow", std::span<const double>(shadow));
  CHECK_THROWS_WITH_AS(ddpm::train::load_weights(c, loaded), doctest::Contains("'ema.shadow' has"),
                       FormatError);
}

TEST_CASE("write_info prints every field, the step and the parameter count") {
  Checkpoint c;
  toy_run().to_checkpoint(c);
  c.set("step", "40");
  const std::vector<float> weights(10, 1.0f);
  c.put<float>("model.layer0.weight", weights);
  std::ostringstream out;
  ddpm::train::write_info(c, out);
  const std::string text = out.str();
  CHECK(text.find("step: 40") != std::string::npos);
  CHECK(text.find("parameters: 10") != std::string::npos);
  for (const ddpm::train::Field& f : toy_run().fields()) {
    CAPTURE(f.key);
    CHECK(text.find(f.key) != std::string::npos);
  }
  CHECK(text.find("100 values, first") != std::string::npos);
}

}  // namespace run_config_test
