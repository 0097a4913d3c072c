// SPDX-License-Identifier: MIT
// Weights across frameworks for ddpm-toy2d and ddpm-images: `export` writes a checkpoint's (EMA)
// weights as a safetensors file under the PyTorch state_dict names of benchmarks/torch_models.py,
// with the run's settings in __metadata__; `sample --weights FILE.safetensors` samples from such a
// file, or from one PyTorch wrote, instead of a checkpoint.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdio>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common_train.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/state_dict.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/run_config.hpp"

namespace ddpm_examples {

/// What `export` writes into __metadata__ besides the run's own fields (the checkpoint's
/// diffusion.*, model.*, data.* and run.format), for --help.
inline constexpr const char* kWeightsMetadataHelp =
    "__metadata__ (string -> string) holds the run as its checkpoint records it: run.format; "
    "diffusion.schedule, diffusion.T, diffusion.beta_start/beta_end (linear) or cosine_s/max_beta "
    "(cosine), diffusion.zero_terminal_snr, diffusion.respacing, diffusion.output (eps, x0, "
    "v), diffusion.variance, diffusion.loss, diffusion.decoder, diffusion.clip_x0, "
    "diffusion.rescale_hybrid, diffusion.snr_weighting; diffusion.betas (the T betas, "
    "comma-separated, exact); model.kind (mlp or unet) and the network's model.* fields (the "
    "config of torch_models.py); data.name, data.mean and data.std (the standardization: the "
    "model sees (x - mean) / std; none for images and built-in data), data.frame; and "
    "ddpm.weights (ema or raw), ddpm.step, format = pt";

/// `export --checkpoint CKPT --out FILE.safetensors [--raw-weights]`.
struct ExportArgs {
  std::string checkpoint;
  std::string out;
  bool raw_weights = false;
};

/// Adds the `export` subcommand; `network` names the torch module ("torch_models.ToyMlp").
inline CLI::App* add_export_command(CLI::App& app, ExportArgs& args, const std::string& network) {
  CLI::App* command = app.add_subcommand(
      "export",
      "write a checkpoint's weights (EMA by default) as a safetensors file with the state_dict "
      "names of " +
          network +
          " (benchmarks/torch_models.py: PyTorch loads it with load_state_dict), for `sample "
          "--weights` or PyTorch. " +
          kWeightsMetadataHelp);
  command->add_option("--checkpoint", args.checkpoint, "model.ckpt written by train")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("--out", args.out, "the safetensors file to write")->required();
  command->add_flag("--raw-weights", args.raw_weights, "export the trained weights, not their EMA");
  return command;
}

/// The __metadata__ of an export: the run's fields, its betas as exact text, which weights and
/// the training step.
template <class ModelConfig>
std::vector<std::pair<std::string, std::string>> weights_metadata(
    const ddpm::train::RunConfig<ModelConfig>& run, const ddpm::train::Checkpoint& checkpoint,
    bool ema) {
  std::vector<std::pair<std::string, std::string>> meta;
  meta.emplace_back("format", "pt");  // what the safetensors tools of PyTorch models expect
  meta.emplace_back("run.format", std::string(ddpm::train::kRunConfigFormat));
  for (const ddpm::train::Field& f : run.fields()) meta.emplace_back(f.key, f.text);
  ddpm::train::FieldWriter betas;
  betas.list("diffusion.betas", run.diffusion.schedule.base().betas());
  meta.emplace_back("diffusion.betas", betas.fields().front().text);
  meta.emplace_back("ddpm.weights", ema ? "ema" : "raw");
  if (checkpoint.has("step")) meta.emplace_back("ddpm.step", checkpoint.get("step"));
  return meta;
}

/// `export`: the checkpoint's EMA weights (its raw weights with --raw-weights, or when it has no
/// EMA) under the torch state_dict names, float32, with weights_metadata.
template <class Model, class ModelConfig>
int export_weights(const ExportArgs& args) {
  const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(args.checkpoint);
  const auto run = ddpm::train::RunConfig<ModelConfig>::from_checkpoint(c);
  Model model(run.model);
  const bool ema = !args.raw_weights && c.contains("ema.shadow");
  ddpm::train::load_weights(c, model, ema ? ddpm::train::Weights::ema : ddpm::train::Weights::raw);
  ddpm::io::SafetensorsWriter writer;
  ddpm::io::add_state_dict(writer, model);
  for (auto& [key, value] : weights_metadata(run, c, ema)) writer.set_metadata(key, value);
  writer.write(args.out);
  std::printf("wrote %s: %lld parameters (%s weights of step %s, float32) and the run's settings\n",
              args.out.c_str(), static_cast<long long>(model.parameter_count()),
              ema ? "EMA" : "raw", c.has("step") ? c.get("step").c_str() : "?");
  return 0;
}

/// `sample --weights FILE.safetensors`, and the options that describe the run when the file's
/// __metadata__ does not (the `settings`, added through add_settings_options).
struct WeightsArgs {
  std::string path;
  std::vector<const CLI::Option*> settings;

  [[nodiscard]] bool given() const noexcept { return !path.empty(); }
};

/// Adds --weights to a sample command that has --checkpoint (now one or the other) and
/// --raw-weights; `network` names the torch module.
inline void add_weights_option(CLI::App& app, WeightsArgs& args, const std::string& network) {
  CLI::Option* checkpoint = app.get_option("--checkpoint");
  checkpoint->required(false);
  app.add_option("--weights", args.path,
                 "sample from a safetensors file instead of --checkpoint: `export`'s, or a "
                 "PyTorch state_dict of " +
                     network +
                     ". The run's settings come from its __metadata__ when it has them (an "
                     "export's), else from the model and diffusion options below (defaults: "
                     "the reference model of BENCHMARKS.md and train's diffusion), and then the "
                     "samples are in the model's units (no data standardization)")
      ->check(CLI::ExistingFile)
      ->excludes(checkpoint)
      ->excludes(app.get_option("--raw-weights"));
}

/// Runs `add()` (which adds the model and diffusion options of a --weights file without
/// __metadata__) and records the options it added, so that giving one where it has no effect is
/// refused.
template <class Add>
void add_settings_options(CLI::App& app, WeightsArgs& args, Add&& add) {
  const std::size_t before = app.get_options().size();
  std::forward<Add>(add)();
  const std::vector<CLI::Option*> all = app.get_options();
  args.settings.assign(all.begin() + static_cast<std::ptrdiff_t>(before), all.end());
}

/// The run a --weights file's __metadata__ describes (written by export: run.format, the fields
/// and diffusion.betas), read as strictly as a checkpoint's; nullopt when it has no run.format.
template <class ModelConfig>
std::optional<ddpm::train::RunConfig<ModelConfig>> run_from_metadata(
    const ddpm::io::SafetensorsFile& file) {
  const std::map<std::string, std::string>& meta = file.metadata();
  if (!meta.contains("run.format")) return std::nullopt;
  ddpm::train::Checkpoint c;
  for (const auto& [key, value] : meta) c.set(key, value);
  // A checkpoint keeps the betas as a tensor (the check of the schedule's formula, and a custom
  // schedule itself); __metadata__ holds only strings.
  const std::vector<double> betas =
      ddpm::train::FieldReader(ddpm::train::Checkpoint::parse(c.serialize(), file.source()))
          .list<double>("diffusion.betas");
  c.put<double>("diffusion.betas", std::span<const double>(betas));
  return ddpm::train::RunConfig<ModelConfig>::from_checkpoint(
      ddpm::train::Checkpoint::parse(c.serialize(), file.source()));
}

/// The model to sample from and its run: from --checkpoint (its EMA weights unless
/// --raw-weights), or from --weights with the run of its __metadata__ or else `from_options`
/// (the settings options' values). Settings options given where they have no effect are refused.
template <class Model, class ModelConfig>
Trained<Model, ModelConfig> load_model(const SampleArgs& args, const WeightsArgs& weights,
                                       const ddpm::train::RunConfig<ModelConfig>& from_options) {
  std::string given;
  for (const CLI::Option* o : weights.settings) {
    if (o->count() > 0) given += (given.empty() ? "" : ", ") + o->get_name();
  }
  const auto refuse_settings = [&](const std::string& why) {
    if (!given.empty()) {
      throw ddpm::InvalidArgument(given, "given",
                                  "only with --weights of a file without a run in its "
                                  "__metadata__ (" +
                                      why + ")");
    }
  };
  if (!weights.given()) {
    ddpm::detail::require(!args.checkpoint.empty(), "--checkpoint", "none",
                          "a model.ckpt written by train, or --weights FILE.safetensors");
    refuse_settings("the checkpoint sets the model and diffusion");
    return load_trained<Model, ModelConfig>(args);
  }
  const ddpm::io::SafetensorsFile file = ddpm::io::SafetensorsFile::load(weights.path);
  std::optional<ddpm::train::RunConfig<ModelConfig>> run = run_from_metadata<ModelConfig>(file);
  if (run) {
    refuse_settings("'" + weights.path + "' sets the model and diffusion in its __metadata__");
  } else {
    run = from_options;
  }
  apply_sample_variance(*run, args);
  Trained<Model, ModelConfig> trained{*run, Model(run->model)};
  ddpm::io::load_state_dict(file, trained.model);
  return trained;
}

}  // namespace ddpm_examples
