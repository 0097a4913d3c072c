// SPDX-License-Identifier: MIT
// What ddpm-toy2d and ddpm-images share: the diffusion, training and sampling options, starting a
// run fresh, from another checkpoint's weights (--init-from) or where a checkpoint stopped
// (--resume, refused with every differing field named), the training run with its loss curve, and
// the `info` subcommand. (check_output_folder, which train commands run first, is in
// common_options.hpp.)
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common_dist.hpp"
#include "common_options.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/samplers/sample.hpp"
#include "ddpm/train/model_fields.hpp"
#include "ddpm/train/run_config.hpp"
#include "ddpm/train/trainer.hpp"

namespace ddpm_examples {

/// --schedule and --T into a ScheduleConfig.
inline void add_schedule_options(CLI::App& app, ddpm::train::ScheduleConfig& schedule) {
  std::vector<std::string> schedules = ddpm::enum_names<ddpm::train::ScheduleKind>();
  std::erase(schedules, "custom");  // custom betas come from the library API, not a flag
  app.add_option_function<std::string>(
         "--schedule",
         [&schedule](const std::string& text) {
           schedule.kind = ddpm::parse_enum<ddpm::train::ScheduleKind>(text);
         },
         "noise schedule: linear or cosine")
      ->check(CLI::IsMember(schedules))
      ->default_str(std::string(ddpm::to_string(schedule.kind)));
  app.add_option("--T", schedule.num_timesteps, "diffusion steps")
      ->check(ddpm_examples::integer_range(1, 100000))
      ->capture_default_str();
}

/// --schedule, --T, --output, --variance, --loss into a DiffusionConfig (choices from the tables).
inline void add_diffusion_options(CLI::App& app, ddpm::train::DiffusionConfig& d) {
  add_schedule_options(app, d.schedule);
  add_choice(app, "--output", d.options.output, "what the network predicts");
  add_choice(app, "--variance", d.options.variance, "the reverse-process variance");
  add_choice(app, "--loss", d.options.loss, "training loss (hybrid/kl need a learned variance)");
  add_choice(app, "--snr-weighting", d.options.snr_weighting,
             "min-SNR weighting of the simple loss (Hang et al. 2023; min(SNR, gamma) on the x0 "
             "error for every --output)");
  app.add_option("--snr-gamma", d.options.snr_gamma, "gamma of --snr-weighting")
      ->check(ddpm_examples::positive())
      ->capture_default_str();
  app.add_flag("--zero-terminal-snr", d.schedule.zero_terminal_snr,
               "rescale the schedule to zero terminal SNR (Lin et al. 2023): x_T is pure noise; "
               "needs --output v or x0");
}

/// --width, --depth, --embedding of the MLP denoiser.
inline void add_model_options(CLI::App& app, ddpm::nn::MlpConfig& m) {
  app.add_option("--width", m.width, "hidden units per layer")
      ->check(ddpm_examples::integer_range(1, 8192))
      ->capture_default_str();
  app.add_option("--depth", m.depth, "hidden layers")
      ->check(ddpm_examples::integer_range(1, 64))
      ->capture_default_str();
  app.add_option("--embedding", m.embedding_dim, "time-embedding size")
      ->check(ddpm_examples::integer_range(2, 4096))
      ->capture_default_str();
}

/// --base, --mult, --res-blocks, --attention, --heads, --dropout, --scale-shift of the UNet (the
/// image size and output channels come from the data and the diffusion).
inline void add_model_options(CLI::App& app, ddpm::nn::UNetConfig& m) {
  app.add_option("--base", m.base_channels, "UNet base channels")
      ->check(ddpm_examples::integer_range(1, 1024))
      ->capture_default_str();
  app.add_option("--mult", m.channel_mult, "channel multiplier per level, e.g. 1,2,2")
      ->delimiter(',')
      ->check(ddpm_examples::integer_range(1, 64))
      ->capture_default_str();
  app.add_option("--res-blocks", m.res_blocks, "ResBlocks per level")
      ->check(ddpm_examples::integer_range(1, 16))
      ->capture_default_str();
  app.add_option("--attention", m.attention_resolutions,
                 "image sides with attention after every ResBlock, e.g. 14,7 (the middle always "
                 "has attention)")
      ->delimiter(',');
  app.add_option("--heads", m.attention_heads, "attention heads")
      ->check(ddpm_examples::integer_range(1, 64))
      ->capture_default_str();
  app.add_option("--dropout", m.dropout, "ResBlock dropout")
      ->check(ddpm_examples::range(0.0, 0.99))
      ->capture_default_str();
  app.add_flag_callback(
      "--scale-shift", [&m] { m.injection = ddpm::nn::EmbeddingInjection::scale_shift; },
      "inject the time embedding as a GroupNorm scale and shift");
}

/// Bytes the first checkpoint of a training run of a model with `parameters` parameters may
/// take: the weights, Adam's two moments and the EMA at 8 bytes each (the widest Real), plus
/// 1 MiB for the metadata.
inline std::uintmax_t checkpoint_bytes_estimate(std::int64_t parameters) {
  return static_cast<std::uintmax_t>(std::max<std::int64_t>(parameters, 0)) * 4 * 8 +
         (std::uintmax_t{1} << 20);
}

/// Options of `train` that may change on resume.
struct TrainArgs {
  int steps = 15000;
  int batch = 1024;
  double lr = 1e-3;
  int warmup = 0;
  ddpm::optim::LrDecay decay = ddpm::optim::LrDecay::constant;
  double grad_clip = 1.0;
  double ema = 0.999;
  bool ema_warmup = true;  ///< EMA decay min(ema, (1 + n)/(10 + n)) at update n
  ddpm::train::TimestepSampling timesteps = ddpm::train::TimestepSampling::uniform;
  std::string resume;
  std::string init_from;
  int checkpoint_every = 1000;
  double minutes = 0.0;
  double offset_noise = 0.0;  ///< k of eps = z + k z_c (add_offset_noise_option)
  int shards = 0;  ///< gradient shards per batch; 0: one per rank (TrainerOptions::shards)
};

inline void add_train_options(CLI::App& app, TrainArgs& a) {
  app.add_option("--steps", a.steps, "optimizer steps (the total, counting a resumed run's)")
      ->check(ddpm_examples::integer_range(1, 100000000))
      ->capture_default_str();
  app.add_option("--batch", a.batch, "batch size")
      ->check(ddpm_examples::integer_range(1, 1000000))
      ->capture_default_str();
  app.add_option("--lr", a.lr, "Adam learning rate")
      ->check(ddpm_examples::positive())
      ->capture_default_str();
  app.add_option("--warmup", a.warmup, "learning-rate warm-up steps")
      ->check(ddpm_examples::integer_at_least(0))
      ->capture_default_str();
  add_choice(app, "--decay", a.decay, "learning-rate decay after warm-up (to 1% of --lr)");
  app.add_option("--grad-clip", a.grad_clip, "global gradient-norm clip (0: off)")
      ->check(ddpm_examples::non_negative())
      ->capture_default_str();
  app.add_option("--ema", a.ema, "EMA decay of the weights used for sampling (0: off)")
      ->check(ddpm_examples::range(0.0, 0.999999))
      ->capture_default_str();
  app.add_option("--ema-warmup", a.ema_warmup,
                 "ramp the EMA decay as min(--ema, (1 + n)/(10 + n)) (off: --ema from the first "
                 "step, as the DDPM reference code)")
      ->capture_default_str();
  add_choice(app, "--timesteps", a.timesteps, "timestep sampler");
  CLI::Option* resume = app.add_option(
      "--resume", a.resume,
      "continue this checkpoint's run (the diffusion, model and data options must match it; "
      "training options such as --steps and --lr may change)");
  app.add_option("--init-from", a.init_from,
                 "start a new run from this checkpoint's (EMA) weights: fine-tuning on other data "
                 "or with another diffusion; the model options must match")
      ->check(CLI::ExistingFile)
      ->excludes(resume);
  app.add_option("--checkpoint-every", a.checkpoint_every,
                 "steps between checkpoints (0: only at the end)")
      ->check(ddpm_examples::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--minutes", a.minutes,
                 "stop after this much wall time (0: no limit), checkpointing as at the end")
      ->check(ddpm_examples::non_negative());
  app.add_option("--shards", a.shards,
                 "split each batch into this many gradient shards, summed exactly: the same "
                 "--shards gives the same model on any number of MPI ranks up to it (mpirun -np "
                 "N; 0: one shard per rank)")
      ->check(ddpm_examples::integer_at_least(0))
      ->capture_default_str();
}

/// --offset-noise, for programs whose rows have channels (`per` says what one offset covers).
inline void add_offset_noise_option(CLI::App& app, TrainArgs& a, const std::string& per) {
  app.add_option("--offset-noise", a.offset_noise,
                 "offset noise k: the training noise is z + k z_c with one z_c ~ N(0, 1) " + per +
                     " (0: off; e.g. 0.1)")
      ->check(ddpm_examples::non_negative())
      ->capture_default_str();
}

/// The Trainer's options; `offset_noise_channels`: the channels of a data row (1: one offset per
/// row).
inline ddpm::train::TrainerOptions trainer_options(const TrainArgs& a, std::uint64_t seed,
                                                   double label_dropout = 0.0,
                                                   ddpm::Index offset_noise_channels = 1) {
  return {.batch_size = a.batch,
          .steps = a.steps,
          .adam = {.learning_rate = a.lr},
          .warmup_steps = std::min(a.warmup, a.steps - 1),
          .decay = a.decay,
          .final_lr = a.decay == ddpm::optim::LrDecay::constant ? 0.0 : a.lr * 0.01,
          .grad_clip = a.grad_clip,
          .ema_decay = a.ema,
          .ema_warmup = a.ema_warmup,
          .timesteps = a.timesteps,
          .label_dropout = label_dropout,
          .offset_noise = a.offset_noise,
          .offset_noise_channels = offset_noise_channels,
          .shards = a.shards > 0 ? a.shards : world().size(),
          .seed = seed};
}

/// Runs `trainer` to its step count on `data` (a Trainer data source), checkpointing `run` into
/// out/model.ckpt every args.checkpoint_every steps and at the end, logging out/loss.csv; then
/// draws this call's losses into out/loss.png (a `smoothing`-step moving average, on a log axis
/// with `log_y`). Returns those losses.
template <class Trainer, class ModelConfig, class Data>
std::vector<double> run_training(Trainer& trainer, Data&& data, const TrainArgs& args,
                                 const ddpm::train::RunConfig<ModelConfig>& run,
                                 const std::filesystem::path& out, ddpm::Index smoothing,
                                 bool log_y, std::string label = "train") {
  const typename Trainer::RunOptions options{.checkpoint = out / "model.ckpt",
                                             .checkpoint_every = args.checkpoint_every,
                                             .architecture = run.describe_model(),
                                             .loss_csv = out / "loss.csv",
                                             .label = std::move(label),
                                             .time_limit_seconds = 60.0 * args.minutes,
                                             .tune_threads = !threads_given()};
  const std::int64_t first = trainer.step_count();
  const std::vector<double> losses = trainer.run(
      std::forward<Data>(data), options, [&](ddpm::train::Checkpoint& c) { run.to_checkpoint(c); });
  if (!losses.empty() && writes_files()) {
    const std::string loss(ddpm::to_string(run.diffusion.options.loss));
    ddpm::io::write_png(out / "loss.png", ddpm::io::render_curve(
                                              losses, {.log_y = log_y,
                                                       .smoothing = smoothing,
                                                       .title = "training loss (" + loss + ")",
                                                       .x_label = "step",
                                                       .x_start = static_cast<double>(first + 1)}));
  }
  return losses;
}

/// --init-from: copies the checkpoint's weights (its EMA when it has one) into `model`, after
/// checking that its model fields match `run`'s; other differences are deliberate and listed.
template <class Model, class ModelConfig>
void init_from(const std::string& path, const ddpm::train::RunConfig<ModelConfig>& run,
               Model& model) {
  const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(path);
  const auto saved = ddpm::train::RunConfig<ModelConfig>::from_checkpoint(c);
  std::vector<std::string> model_diff, other;
  for (const std::string& d : ddpm::train::differences(saved, run)) {
    (d.rfind("model.", 0) == 0 ? model_diff : other).push_back(d);
  }
  if (!model_diff.empty()) {
    std::string message =
        "ddpm: --init-from '" + path + "': the network differs, so its " + "weights do not fit:";
    for (const std::string& d : model_diff) message += "\n  " + d;
    throw ddpm::FormatError(message);
  }
  ddpm::train::load_weights(c, model);
  std::printf("initialized from the weights of %s (step %s)%s\n", path.c_str(),
              c.get("step").c_str(), other.empty() ? "" : "; this run differs in:");
  for (const std::string& d : other) std::printf("  %s\n", d.c_str());
}

/// --resume: refuses a run that differs from the checkpoint's (every differing field named),
/// then restores the trainer's whole state.
template <class Trainer, class ModelConfig>
void resume(const std::string& path, const ddpm::train::RunConfig<ModelConfig>& run,
            Trainer& trainer) {
  const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(path);
  const auto saved = ddpm::train::RunConfig<ModelConfig>::from_checkpoint(c);
  ddpm::train::require_same_run(
      saved, run, path,
      "Resume with the options the checkpoint was trained with (`info " + path +
          "` lists them), or start a new run from its weights with --init-from " + path);
  trainer.restore(c, run.describe_model());
  std::printf("resumed from %s at step %lld\n", path.c_str(),
              static_cast<long long>(trainer.step_count()));
}

/// The sampling options the programs share.
struct SampleArgs {
  std::string checkpoint;
  ddpm::SamplerKind sampler = ddpm::SamplerKind::ancestral;
  std::optional<ddpm::GridKind> grid;  ///< unset: the sampler's default grid
  int sample_steps = 0;                ///< 0: the sampler's default (ddpm::default_sample_steps)
  std::optional<double> eta;           ///< unset: DDIM 0, euler-a and dpm++2m-sde 1
  double s_churn = 0.0;
  int n = 0;
  bool raw_weights = false;
  std::optional<ddpm::VarianceKind> sample_variance;  ///< unset: the run's own variance

  /// The sampler, its grid, steps and noise.
  [[nodiscard]] ddpm::SamplerSpec spec() const {
    ddpm::SolverOptions solver;
    solver.s_churn = s_churn;
    return {.kind = sampler, .grid = grid, .steps = sample_steps, .eta = eta, .solver = solver};
  }
  /// The sampling steps for a diffusion of T steps.
  [[nodiscard]] int steps(int T) const { return spec().step_count(T); }
  /// "ddpm", "ddim", "dpm++2m", ...
  [[nodiscard]] std::string sampler_name() const { return std::string(ddpm::to_string(sampler)); }
  /// "dpm++2m, karras grid, 20 steps (20 network evaluations)" for a diffusion of T steps.
  [[nodiscard]] std::string describe(int T) const {
    const ddpm::SamplerSpec s = spec();
    return sampler_name() + ", " + std::string(ddpm::to_string(s.grid_kind())) + " grid, " +
           std::to_string(s.step_count(T)) + " steps (" + std::to_string(s.network_evaluations(T)) +
           " network evaluations)";
  }
  [[nodiscard]] ddpm::train::Weights weights() const {
    return raw_weights ? ddpm::train::Weights::raw : ddpm::train::Weights::ema;
  }
};

inline void add_sample_options(CLI::App& app, SampleArgs& args, bool with_checkpoint) {
  if (with_checkpoint) {
    app.add_option("--checkpoint", args.checkpoint, "model.ckpt written by train")->required();
    app.add_flag("--raw-weights", args.raw_weights,
                 "sample with the trained weights, not their EMA");
  }
  add_choice(app, "--sampler", args.sampler,
             "the sampler (ddpm: ancestral; euler, heun, dpm++, unipc: grid solvers)");
  app.add_option_function<std::string>(
         "--grid",
         [&args](const std::string& text) { args.grid = ddpm::parse_enum<ddpm::GridKind>(text); },
         "noise-level grid: " + ddpm::enum_choices<ddpm::GridKind>() +
             " (default: evenly for ddpm/ddim, exponential for the solvers; ddpm/ddim need a grid "
             "of "
             "the schedule's own steps)")
      ->check(CLI::IsMember(ddpm::enum_names<ddpm::GridKind>()));
  app.add_option("--sample-steps", args.sample_steps,
                 "sampling steps, one network evaluation each (Heun: two; default: T for ddpm, "
                 "50 for ddim/euler/euler-a, 25 for heun, 20 for dpm++/unipc)")
      ->check(ddpm_examples::integer_at_least(0));
  app.add_option_function<double>(
         "--eta", [&args](double value) { args.eta = value; },
         "noise: DDIM eta (default 0: deterministic; 1 ancestral-like), euler-a and dpm++2m-sde "
         "(default 1; 0 gives euler and dpm++2m)")
      ->check(ddpm_examples::non_negative());
  app.add_option("--s-churn", args.s_churn,
                 "euler/heun churn (Karras et al. 2022): noise added back per step, 0 = the ODE")
      ->check(ddpm_examples::non_negative());
}

/// --sample-variance, for commands that load their model through load_trained.
inline void add_sample_variance_option(CLI::App& app, SampleArgs& args) {
  app.add_option_function<std::string>(
         "--sample-variance",
         [&args](const std::string& text) {
           args.sample_variance = ddpm::parse_enum<ddpm::VarianceKind>(text);
         },
         "the reverse-process variance of a model trained with a fixed one: fixed-small "
         "(posterior beta~_t) or fixed-large (beta_t); L_simple does not train it, so it is a "
         "sampling choice (default: the run's)")
      ->check(CLI::IsMember({"fixed-small", "fixed-large"}));
}

/// --sample-variance: the fixed variance the run is sampled (and its bound evaluated) with.
template <class ModelConfig>
void apply_sample_variance(ddpm::train::RunConfig<ModelConfig>& run, const SampleArgs& args) {
  if (!args.sample_variance) return;
  ddpm::detail::require(!run.diffusion.learned_variance(), "--sample-variance",
                        ddpm::to_string(*args.sample_variance),
                        "only for a model trained with a fixed variance (this one learned it: its "
                        "variance output is what the sampler uses)");
  run.diffusion.options.variance = *args.sample_variance;
}

/// The labels and guidance of sampling a class-conditional model or with a noisy classifier (the
/// `label` and weights of ddpm::sample_labels and ddpm::LabeledSampling).
struct GuidanceArgs {
  int label = ddpm::kClassesInTurn;  ///< or a class, or -1 (ddpm::kNoLabel): none
  double guidance = 0.0;             ///< classifier-free guidance weight w
  double guidance_rescale = 0.0;     ///< classifier-free guidance rescale phi
  std::string classifier;            ///< a train-classifier checkpoint: classifier guidance
  double classifier_scale = 0.0;     ///< classifier guidance scale s
};

/// --label, --guidance, --classifier (help: `classifier_help`) and --classifier-scale.
inline void add_guidance_options(CLI::App& app, GuidanceArgs& args,
                                 const std::string& classifier_help) {
  app.add_option("--label", args.label,
                 "class of every sample (-1: none; default: the classes in turn for a "
                 "class-conditional model)");
  app.add_option("--guidance", args.guidance,
                 "classifier-free guidance weight w: (1 + w) eps(x, y) - w eps(x), any finite w "
                 "(0: conditional, -1: unconditional; eps_u + s (eps_c - eps_u) with s = 1 + w)")
      ->check(ddpm_examples::finite());
  app.add_option("--guidance-rescale", args.guidance_rescale,
                 "classifier-free guidance rescale phi in [0, 1] (Lin et al. 2023): the guided "
                 "output's per-sample std pulled back to the conditional one's")
      ->check(ddpm_examples::range(0.0, 1.0));
  app.add_option("--classifier", args.classifier, classifier_help);
  app.add_option("--classifier-scale", args.classifier_scale, "classifier guidance scale s")
      ->check(ddpm_examples::non_negative());
}

/// --steps, --batch, --lr and --clean-fraction of a train-classifier command, into the fields
/// steps, batch_size, learning_rate and clean_fraction of `options` (train::ClassifierRunOptions
/// or train::PointClassifierRunOptions).
template <class Options>
void add_classifier_train_options(CLI::App& app, Options& options) {
  app.add_option("--steps", options.steps, "Adam steps")
      ->check(ddpm_examples::integer_range(1, 10000000))
      ->capture_default_str();
  app.add_option("--batch", options.batch_size, "batch size")
      ->check(ddpm_examples::integer_range(1, 100000))
      ->capture_default_str();
  app.add_option("--lr", options.learning_rate, "Adam learning rate")
      ->check(ddpm_examples::positive())
      ->capture_default_str();
  app.add_option("--clean-fraction", options.clean_fraction, "fraction of training inputs at t = 0")
      ->check(ddpm_examples::range(0.0, 1.0))
      ->capture_default_str();
}

/// on_step(step, smoothed_loss) of a classifier run: `bar` shows the step and the loss.
inline auto loss_progress(ddpm::io::ProgressBar& bar) {
  return [&bar](int step, double loss) {
    char line[64];
    std::snprintf(line, sizeof line, "loss %.4f", loss);
    bar.update(step, line);
  };
}

/// Prints " t=0 99.5%  t=250 70.2% ..." and a newline: a classifier run's accuracy by timestep.
inline void print_accuracy(const std::vector<std::pair<int, double>>& accuracy) {
  for (const auto& [t, fraction] : accuracy) std::printf("  t=%d %.1f%%", t, 100.0 * fraction);
  std::printf("\n");
}

/// A trained model and the run it belongs to.
template <class Model, class ModelConfig>
struct Trained {
  ddpm::train::RunConfig<ModelConfig> run;
  Model model;
};

/// The checkpoint's run and its model, with the EMA weights unless --raw-weights.
template <class Model, class ModelConfig>
Trained<Model, ModelConfig> load_trained(const SampleArgs& args) {
  const ddpm::train::Checkpoint c = ddpm::train::Checkpoint::load(args.checkpoint);
  auto run = ddpm::train::RunConfig<ModelConfig>::from_checkpoint(c);
  apply_sample_variance(run, args);
  Trained<Model, ModelConfig> trained{run, Model(run.model)};
  ddpm::train::load_weights(c, trained.model, args.weights());
  return trained;
}

/// The `info CHECKPOINT` subcommand.
struct InfoCommand {
  CLI::App* command = nullptr;
  std::string checkpoint;

  void add(CLI::App& app) {
    command = app.add_subcommand("info",
                                 "print what a checkpoint holds: every recorded field (diffusion, "
                                 "model, data, training options), the step and the parameter "
                                 "count");
    command->add_option("checkpoint", checkpoint, "model.ckpt written by train")->required();
  }
  [[nodiscard]] int run() const {
    ddpm::train::write_info(ddpm::train::Checkpoint::load(checkpoint), std::cout);
    return 0;
  }
};

}  // namespace ddpm_examples
