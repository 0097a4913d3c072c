// SPDX-License-Identifier: MIT
// Trainer: the DDPM training loop over any TrainableDenoiser — batches, timesteps, loss and its
// gradient, backprop, clipping, Adam, EMA — with checkpoints that resume bitwise identically.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "ddpm/core/communicator.hpp"
#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/exact_sum.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/thread_tuner.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/clip.hpp"
#include "ddpm/optim/ema.hpp"
#include "ddpm/optim/lr_schedule.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/timestep_sampler.hpp"
#include "ddpm/train/checkpoint.hpp"

namespace ddpm::train {

/// How training timesteps are drawn (names: "uniform", "importance"; see EnumTable below).
enum class TimestepSampling {
  uniform,    ///< t uniform over 0..T-1
  importance  ///< LossSecondMomentSampler: t by the second moment of its loss
};

}  // namespace ddpm::train

namespace ddpm {
/// The names of the TimestepSampling values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<train::TimestepSampling> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "timesteps";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<train::TimestepSampling>, 2> names = {
      {{train::TimestepSampling::uniform, "uniform"},
       {train::TimestepSampling::importance, "importance"}}};
};
}  // namespace ddpm

namespace ddpm::train {

/// Options of a Trainer. The learning rate follows optim::LrSchedule (warm-up, then decay).
struct TrainerOptions {
  Index batch_size = 256;         ///< samples per step
  std::int64_t steps = 10000;     ///< total optimizer steps (the end of the lr decay)
  optim::AdamOptions adam{};      ///< adam.learning_rate is the base rate
  std::int64_t warmup_steps = 0;  ///< linear warm-up of the learning rate from 0
  optim::LrDecay decay = optim::LrDecay::constant;  ///< what the rate does after the warm-up
  double final_lr = 0.0;                            ///< floor of the decay
  double grad_clip = 0.0;                           ///< global-norm clipping threshold; 0 disables
  double ema_decay = 0.999;                         ///< weight EMA; 0 disables it
  /// EMA decay min(ema_decay, (1 + n) / (10 + n)) after n updates, so a short run's average is
  /// not dominated by the random initialization.
  bool ema_warmup = true;
  TimestepSampling timesteps =
      TimestepSampling::uniform;  ///< uniform, or importance-sampled by the loss history
  /// With labeled data: the probability that a row's label is replaced by kNoLabel, so one model
  /// learns the conditional and the unconditional denoiser (classifier-free guidance, Ho &
  /// Salimans 2022). Drawn from (seed, stream::labels, row, step).
  double label_dropout = 0.0;
  /// Consecutive rows that share one timestep draw (and its weight): a point cloud's points are
  /// noised to one level (Luo & Hu). batch_size must be a multiple of it.
  Index timestep_group = 1;
  /// Offset noise k >= 0: the training noise is eps = z + k z_c, with z_c ~ N(0, 1) one draw per
  /// (row, channel) broadcast over the channel's values, drawn from (seed, stream::offset_noise,
  /// row, step). 0: off (the noise is z).
  double offset_noise = 0.0;
  /// The channels of a data row for offset noise: the row is channels x values (channel-major, as
  /// images are stored); 1: one offset per row. Must divide the data width.
  Index offset_noise_channels = 1;
  /// The batch's split into this many fixed shards (near-equal runs of rows), each run through
  /// the network on its own and its gradient summed exactly (core/exact_sum.hpp): the result is
  /// bitwise the same however the shards are spread over processes, so a run with a fixed
  /// `shards` gives the same model on 1, 2 or `shards` ranks of a Communicator. 1: the whole
  /// batch in one pass (one process only). Each shard s > 0 draws its dropout masks under the
  /// seed seed + s * 0x9E3779B97F4A7C15. In 1 .. batch_size, and at least the number of ranks.
  Index shards = 1;
  std::uint64_t seed = 0;  ///< noise, timestep and label-dropout draws
};

/// What one step did.
struct StepStats {
  std::int64_t step;     ///< number of completed steps after this one
  double loss;           ///< the batch's mean (weighted) loss
  double grad_norm;      ///< global gradient norm before clipping
  double learning_rate;  ///< the rate this step used
};

/// The training loop. Everything random is addressed by (seed, step), so the model, the optimizer
/// state, the EMA, the importance sampler's history and the step count are the whole state: a run
/// resumed from a checkpoint continues bitwise identically. The diffusion may be respaced:
/// training steps are drawn among its kept steps and the model sees their original timesteps.
///
/// \code
///   ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> trainer(model, diffusion, {.steps = 5000});
///   while (trainer.step_count() < 5000) trainer.step(data);
/// \endcode
template <class Real, class Model>
class Trainer {
  // One static_assert per requirement, so the error names the one member the model lacks.
  static_assert((ddpm::detail::check_trainable_denoiser<Model, Real>(), true));

 public:
  /// Trains `model` under `diffusion`, as one rank of `comm` when it has several (every rank runs
  /// the same steps on the same data source; see TrainerOptions::shards); throws InvalidArgument
  /// for an option out of range.
  Trainer(Model& model, GaussianDiffusion<Real> diffusion, const TrainerOptions& options,
          Communicator& comm = single_process())
      : model_(&model),
        comm_(&comm),
        diffusion_(std::move(diffusion)),
        options_(options),
        adam_(options.adam),
        lr_schedule_({.base_lr = options.adam.learning_rate,
                      .warmup_steps = options.warmup_steps,
                      .decay = options.decay,
                      .total_steps = options.steps,
                      .final_lr = options.final_lr}),
        rng_(options.seed) {
    ddpm::detail::require(options.batch_size >= 1, "batch_size", options.batch_size, ">= 1");
    ddpm::detail::require(options.steps >= 1, "steps", options.steps, ">= 1");
    ddpm::detail::require(options.grad_clip >= 0.0, "grad_clip", options.grad_clip,
                          ">= 0 (0 disables)");
    ddpm::detail::require(options.ema_decay >= 0.0 && options.ema_decay < 1.0, "ema_decay",
                          options.ema_decay, "[0, 1) (0 disables the EMA)");
    ddpm::detail::require(options.label_dropout >= 0.0 && options.label_dropout <= 1.0,
                          "label_dropout", options.label_dropout, "[0, 1]");
    ddpm::detail::require(
        options.timestep_group >= 1 && options.batch_size % options.timestep_group == 0,
        "timestep_group", options.timestep_group,
        "a divisor of batch_size = " + std::to_string(options.batch_size));
    ddpm::detail::require(std::isfinite(options.offset_noise) && options.offset_noise >= 0.0,
                          "offset_noise", options.offset_noise, ">= 0 (0: off)");
    ddpm::detail::require(options.offset_noise_channels >= 1, "offset_noise_channels",
                          options.offset_noise_channels, ">= 1 (1: one offset per row)");
    ddpm::detail::require(options.shards >= comm.size() && options.shards <= options.batch_size,
                          "shards", options.shards, [&] {
                            return std::to_string(comm.size()) + " (the ranks) .. " +
                                   std::to_string(options.batch_size) + " (the batch size)";
                          });
    if constexpr (EncodingDenoiser<Model, Real>) {
      ddpm::detail::require(options.shards == 1, "shards", options.shards,
                            "1 for a model that encodes the clean batch (its auxiliary loss is a "
                            "whole-batch term)");
    }
    if (options.ema_decay > 0.0)
      ema_.emplace(blocks(),
                   optim::EmaOptions{.decay = options.ema_decay, .warmup = options.ema_warmup});
    const int T = diffusion_.num_timesteps();
    if (options.timesteps == TimestepSampling::importance) {
      timestep_sampler_ = LossSecondMomentSampler(T);
    } else {
      timestep_sampler_ = UniformTimestepSampler(T);
    }
    const auto n = static_cast<std::size_t>(options.batch_size);
    steps_.resize(n);
    t_.resize(n);
    weights_.resize(n);
    if (options.timestep_group > 1) {
      const auto groups = static_cast<std::size_t>(options.batch_size / options.timestep_group);
      group_steps_.resize(groups);
      group_weights_.resize(groups);
      group_losses_.resize(groups);
    }
  }

  /// One optimizer step on the batch data(step_count(), batch_size, ...). Throws NonFiniteError
  /// (leaving the parameters untouched) if the loss or the gradient is not finite.
  template <class Data>
  StepStats step(Data&& data) {
    constexpr bool labeled = LabeledDataSource<Data, Real>;
    static_assert(DataSource<Data, Real> || labeled,
                  "the data source must be callable as data(std::int64_t step, ddpm::Index n, "
                  "ddpm::Batch<Real>& out) or, with labels, as data(step, n, out, "
                  "std::vector<int>& labels)");
    const std::int64_t step = step_;
    const auto counter = static_cast<std::uint32_t>(step);
    if constexpr (labeled) {
      static_assert(ConditionalDenoiser<Model, Real>,
                    "labeled data needs a model with predict(x_t, t, labels, out)");
      data(step, options_.batch_size, x0_, labels_);
      ddpm::detail::require(static_cast<Index>(labels_.size()) == options_.batch_size,
                            "data labels", labels_.size(),
                            std::to_string(options_.batch_size) + " labels (the batch size)");
      drop_labels(counter);
    } else {
      data(step, options_.batch_size, x0_);
    }
    ddpm::detail::require_shape(x0_.rows() == options_.batch_size && x0_.cols() >= 1, "data batch",
                                x0_.rows(), x0_.cols(),
                                std::to_string(options_.batch_size) + " rows (the batch size)");
    // Draw step indices of the (possibly respaced) schedule; the model and the loss take the
    // original timesteps they stand for.
    draw_timesteps(counter);
    const NoiseSchedule& schedule = diffusion_.schedule();
    for (std::size_t i = 0; i < t_.size(); ++i) t_[i] = schedule.timestep(steps_[i]);
    noise_.resize(x0_.rows(), x0_.cols());
    rng_.fill_normal(noise_, stream::forward_noise, 0, counter);
    if (options_.offset_noise > 0.0) add_offset_noise(counter);
    diffusion_.q_sample(x0_, t_, noise_, x_t_);
    const double loss = options_.shards == 1 ? whole_batch_gradient(step, counter)
                                             : sharded_gradient(step, counter);
    const double norm = options_.grad_clip > 0.0
                            ? optim::clip_grad_norm(blocks(), options_.grad_clip)
                            : optim::global_grad_norm(blocks());
    if (!std::isfinite(norm)) stop_non_finite(step, "gradient norm", norm);
    update_timestep_sampler();
    const double lr = lr_schedule_(step);
    adam_.set_learning_rate(lr);
    adam_.step(blocks());
    if (ema_) ema_->update(blocks());
    ++step_;
    return {step_, loss, norm, lr};
  }

  /// The number of completed steps.
  [[nodiscard]] std::int64_t step_count() const noexcept { return step_; }
  /// The seed of the run's noise and timestep draws (the checkpoint's after restore()).
  [[nodiscard]] std::uint64_t seed() const noexcept { return rng_.seed(); }
  /// The options it was built with.
  [[nodiscard]] const TrainerOptions& options() const noexcept { return options_; }
  /// The diffusion it trains under.
  [[nodiscard]] const GaussianDiffusion<Real>& diffusion() const noexcept { return diffusion_; }
  /// The model it trains.
  [[nodiscard]] Model& model() noexcept { return *model_; }
  /// The per-sample losses of the last step.
  [[nodiscard]] const TrainingLoss<Real>& last_loss() const noexcept { return loss_; }

  /// Swaps the EMA weights into the model until the guard is destroyed (a no-op without EMA).
  class EmaWeights {
   public:
    /// Swaps the EMA weights into the trainer's model.
    explicit EmaWeights(Trainer& trainer) : trainer_(trainer) { swap(); }
    EmaWeights(const EmaWeights&) = delete;
    EmaWeights& operator=(const EmaWeights&) = delete;
    ~EmaWeights() { swap(); }

   private:
    void swap() {
      if (trainer_.ema_) trainer_.ema_->swap(trainer_.blocks());
    }
    Trainer& trainer_;
  };
  /// The EmaWeights guard of this trainer.
  [[nodiscard]] EmaWeights ema_weights() { return EmaWeights(*this); }

  /// The whole training state, with `architecture` (a description of the model that must match
  /// on restore) and any extra metadata the caller sets afterwards.
  [[nodiscard]] Checkpoint checkpoint(const std::string& architecture) {
    Checkpoint c;
    c.set("format", "ddpm trainer");
    c.set("architecture", architecture);
    c.set("step", std::to_string(step_));
    c.set("seed", std::to_string(rng_.seed()));
    c.set("diffusion", describe_diffusion());
    // The training knobs, for `info`; a resume may change them.
    c.set("train.batch", std::to_string(options_.batch_size));
    c.set("train.steps", std::to_string(options_.steps));
    c.set("train.lr", detail::exact_number(options_.adam.learning_rate));
    c.set("train.warmup", std::to_string(options_.warmup_steps));
    c.set("train.decay", std::string(ddpm::to_string(options_.decay)));
    c.set("train.grad_clip", detail::exact_number(options_.grad_clip));
    c.set("train.ema", detail::exact_number(options_.ema_decay));
    c.set("train.ema_warmup", options_.ema_warmup ? "on" : "off");
    c.set("train.timesteps", std::string(ddpm::to_string(options_.timesteps)));
    c.set("train.label_dropout", detail::exact_number(options_.label_dropout));
    c.set("train.timestep_group", std::to_string(options_.timestep_group));
    if (options_.shards > 1) c.set("train.shards", std::to_string(options_.shards));
    if (options_.offset_noise > 0.0) {  // absent: off (as in checkpoints from before the option)
      c.set("train.offset_noise", detail::exact_number(options_.offset_noise));
      c.set("train.offset_noise_channels", std::to_string(options_.offset_noise_channels));
    }
    for (const ParameterBlock<Real>& block : blocks()) {
      c.put<Real>("model." + block.name, std::span<const Real>(block.value));
    }
    c.put<Real>("adam.m", adam_.first_moment());
    c.put<Real>("adam.v", adam_.second_moment());
    const std::vector<std::int64_t> adam_step = {adam_.step_count()};
    c.put_integers("adam.step", adam_step);
    if (ema_) {
      c.put<Real>("ema.shadow", ema_->shadow());
      const std::vector<std::int64_t> updates = {ema_->num_updates()};
      c.put_integers("ema.updates", updates);
    }
    if (const auto* s = std::get_if<LossSecondMomentSampler>(&timestep_sampler_)) {
      c.put<double>("timesteps.history", s->loss_history());
      const std::vector<std::int64_t> counts(s->loss_counts().begin(), s->loss_counts().end());
      c.put_integers("timesteps.counts", counts);
    }
    return c;
  }

  /// Restores a state written by checkpoint(); throws FormatError if the architecture, the
  /// diffusion or any tensor does not match this trainer's.
  void restore(const Checkpoint& c, const std::string& architecture) {
    if (c.get("architecture") != architecture) {
      throw FormatError("ddpm: checkpoint architecture mismatch: the file has \"" +
                        c.get("architecture") + "\", the model is \"" + architecture + "\"");
    }
    if (c.get("diffusion") != describe_diffusion()) {
      throw FormatError("ddpm: checkpoint diffusion mismatch: the file has \"" +
                        c.get("diffusion") + "\", this run uses \"" + describe_diffusion() + "\"");
    }
    for (const ParameterBlock<Real>& block : blocks())
      c.take<Real>("model." + block.name, block.value);
    std::vector<Real> m(c.tensor("adam.m").real.size()), v(c.tensor("adam.v").real.size());
    c.take<Real>("adam.m", m);
    c.take<Real>("adam.v", v);
    adam_.set_state(single_integer(c, "adam.step"), m, v);
    if (ema_) {
      if (!c.contains("ema.shadow")) {
        throw FormatError("ddpm: checkpoint '" + c.source() +
                          "' was trained without an EMA of the weights; resume it with the EMA "
                          "off (ema_decay = 0)");
      }
      std::vector<Real> shadow(ema_->shadow().size());
      c.take<Real>("ema.shadow", shadow);
      ema_->set_state(single_integer(c, "ema.updates"), shadow);
    }
    if (auto* s = std::get_if<LossSecondMomentSampler>(&timestep_sampler_)) {
      if (!c.contains("timesteps.history")) {
        throw FormatError("ddpm: checkpoint '" + c.source() +
                          "' was trained with uniform timesteps; resume it with them");
      }
      std::vector<double> history(s->loss_history().size());
      c.take<double>("timesteps.history", history);
      const auto& counts = c.integers("timesteps.counts");
      s->restore(std::move(history), std::vector<int>(counts.begin(), counts.end()));
    }
    step_ = parse_integer(c.get("step"), "step");
    // The counter-based RNG's whole state is its seed: continue the run's own stream.
    rng_ = CounterRng(static_cast<std::uint64_t>(parse_integer(c.get("seed"), "seed")));
  }

  /// Where and how often run() writes things.
  struct RunOptions {
    std::filesystem::path checkpoint;      ///< written every checkpoint_every steps and at the end
    std::int64_t checkpoint_every = 1000;  ///< 0: only at the end
    std::string architecture;              ///< stored in the checkpoint
    std::filesystem::path loss_csv;        ///< "step,loss,grad_norm,lr" per step (empty: none)
    std::string label = "train";           ///< in front of each progress report
    /// Stop after this much wall-clock time (0: no limit); the run ends as at options().steps,
    /// with a checkpoint. For comparisons at a fixed time budget.
    double time_limit_seconds = 0.0;
    /// Let a ThreadTuner choose each step's thread count, between 1 and OpenMP's current
    /// maximum, from the measured step times, when the model is ThreadCountInvariant (results
    /// are then bitwise the same for any count; on a machine where another process keeps a core
    /// busy, fewer threads can be many times faster). false, or another model: every step uses
    /// OpenMP's current maximum.
    bool tune_threads = true;
  };

  /// Steps until options().steps (or the time limit), with a progress display (step, loss,
  /// steps/s, ETA to whichever end is nearer), periodic atomic checkpoints and the loss log.
  /// `annotate(checkpoint)` may add metadata to every checkpoint written. If the loss or a
  /// gradient becomes non-finite, the loss log is written and NonFiniteError is rethrown with the
  /// last good checkpoint named; that checkpoint is kept.
  /// A checkpoint that cannot be written (a full disk) throws io::WriteError naming the file and
  /// the step; the previous checkpoint stays intact (io::write_file_atomically), so a kill -9 or
  /// a full disk loses at most `checkpoint_every` steps. Returns the loss of every step run. With
  /// several ranks, rank 0 alone shows progress and writes the checkpoints and the log, and the
  /// ranks stop on the same step (at the time limit of the first rank to reach it).
  template <class Data, class Annotate>
  std::vector<double> run(Data&& data, const RunOptions& run, Annotate&& annotate) {
    std::vector<double> losses;
    std::string log = "step,loss,grad_norm,lr\n";
    const std::int64_t first = step_;
    const bool writer = comm_->rank() == 0;
    std::ostream silent(nullptr);  // the other ranks' progress goes nowhere
    // A bar redrawn in place on a terminal, plain periodic lines otherwise.
    io::ProgressBar progress(std::max<std::int64_t>(1, options_.steps - first), run.label,
                             writer ? std::cerr : silent,
                             {.unit = "step", .time_limit_seconds = run.time_limit_seconds});
    std::int64_t last_saved = -1;
    const auto save = [&] {
      if (run.checkpoint.empty() || !writer) return;
      Checkpoint c = checkpoint(run.architecture);
      annotate(c);
      try {
        c.save(run.checkpoint);
      } catch (const io::WriteError& e) {  // a full disk: say where the run stopped
        throw io::WriteError(std::string(e.what()) + "; training stopped at step " +
                             std::to_string(step_) +
                             (last_saved >= 0 ? " (the last checkpoint this run wrote is step " +
                                                    std::to_string(last_saved) + ")"
                                              : std::string()));
      }
      last_saved = step_;
    };
    const auto write_log = [&] {
      if (!run.loss_csv.empty() && writer) io::write_file_atomically(run.loss_csv, log);
    };
    const auto start = std::chrono::steady_clock::now();
    const auto out_of_time = [&] {
      if (run.time_limit_seconds <= 0.0) return false;
      std::array<double, 1> over = {
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >=
                  run.time_limit_seconds
              ? 1.0
              : 0.0};
      comm_->all_reduce_max(over);  // one rank out of time stops them all, on the same step
      return over[0] > 0.0;
    };
    std::optional<ThreadTuner> tuner;  // puts OpenMP's thread count back when run() returns
    if (run.tune_threads && ThreadCountInvariant<Model>) tuner.emplace(ddpm::detail::max_threads());
    try {
      while (step_ < options_.steps && !out_of_time()) {
        if (tuner) tuner->begin_step();
        const auto step_start = std::chrono::steady_clock::now();
        const StepStats s = step(data);
        if (tuner) {
          tuner->end_step(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count());
        }
        losses.push_back(s.loss);
        char line[128];
        std::snprintf(line, sizeof line, "%lld,%.9g,%.9g,%.9g\n", static_cast<long long>(s.step),
                      s.loss, s.grad_norm, s.learning_rate);
        log += line;
        std::snprintf(line, sizeof line, "loss %.4f", s.loss);
        progress.update(s.step - first, line);
        if (run.checkpoint_every > 0 && s.step % run.checkpoint_every == 0) save();
      }
    } catch (const NonFiniteError& e) {
      write_log();
      throw NonFiniteError(std::string(e.what()) + "; " +
                           (last_saved >= 0
                                ? "the last good checkpoint is " + run.checkpoint.string() +
                                      " (step " + std::to_string(last_saved) + ")"
                                : std::string("no checkpoint was written before it")));
    }
    progress.finish();
    save();
    write_log();
    return losses;
  }

 private:
  decltype(auto) blocks() { return model_->parameters(); }

  [[noreturn]] static void stop_non_finite(std::int64_t step, const std::string& what,
                                           double value) {
    throw NonFiniteError("ddpm: training stopped at step " + std::to_string(step) + ": the " +
                         what + " is " + ddpm::detail::to_text(value) +
                         " (try a lower learning rate or gradient clipping)");
  }

  void predict(const Batch<Real>& x_t, std::span<const int> t, std::span<const int> labels) {
    if constexpr (ConditionalDenoiser<Model, Real>) {
      if (!labels.empty()) {
        model_->predict(x_t, t, labels, out_);
        return;
      }
    }
    model_->predict(x_t, t, out_);
  }

  // The loss and gradient of the whole batch in one pass.
  double whole_batch_gradient(std::int64_t step, std::uint32_t counter) {
    if constexpr (EncodingDenoiser<Model, Real>) model_->encode_clean(x0_, rng_, counter);
    // A model with dropout draws its masks from the run's seed and the step, so a resumed run is
    // exact.
    if constexpr (requires(Model & m) { m.set_dropout_source(rng_, counter); }) {
      model_->set_dropout_source(rng_, counter);
    }
    predict(x_t_, t_, labels_);
    diffusion_.training_loss(out_, x0_, x_t_, noise_, t_, loss_, grad_, weights_);
    double loss = static_cast<double>(loss_.mean);
    if constexpr (EncodingDenoiser<Model, Real>) loss += model_->auxiliary_loss();
    if (!std::isfinite(loss)) stop_non_finite(step, "loss", loss);
    model_->zero_grad();
    model_->backward(grad_);
    return loss;
  }

  // The loss and gradient of the batch as options_.shards shards, this rank computing its share
  // of them. Each shard's gradient (of its part of the batch mean) is converted to fixed point on
  // one scale per parameter block, set by the block's largest magnitude over all shards, and the
  // integers are summed over the ranks; the per-row losses travel as bit patterns. Every rank
  // ends with the same gradient and losses, bitwise, for any number of ranks.
  double sharded_gradient(std::int64_t step, std::uint32_t counter) {
    const Index batch = options_.batch_size;
    const ItemRange mine = split_evenly(options_.shards, comm_->size(), comm_->rank());
    std::size_t parameter_count = 0, block_count = 0;
    for (const ParameterBlock<Real>& block : blocks()) {
      parameter_count += block.grad.size();
      ++block_count;
    }
    // Each block's largest gradient magnitude over this rank's shards (infinite when one is not
    // finite, so that every rank learns it from the maximum).
    maxima_.assign(block_count, 0.0);
    shard_grads_.resize(static_cast<std::size_t>(mine.size()));
    const auto rows = static_cast<std::size_t>(batch);
    // sums_: the fixed-point gradient, then the rows' loss, mse and vlb as bits.
    sums_.assign(parameter_count + 3 * rows, 0);
    for (Index s = mine.begin; s < mine.end; ++s) {
      const ItemRange r = split_evenly(batch, options_.shards, s);
      const auto first = static_cast<std::size_t>(r.begin), n = static_cast<std::size_t>(r.size());
      shard_x0_ = x0_.middleRows(r.begin, r.size());
      shard_x_t_ = x_t_.middleRows(r.begin, r.size());
      shard_noise_ = noise_.middleRows(r.begin, r.size());
      const std::span<const int> t = std::span<const int>(t_).subspan(first, n);
      if constexpr (requires(Model & m) { m.set_dropout_source(rng_, counter); }) {
        const CounterRng masks(rng_.seed() + static_cast<std::uint64_t>(s) * 0x9E3779B97F4A7C15u);
        model_->set_dropout_source(masks, counter);
      }
      predict(shard_x_t_, t,
              labels_.empty() ? std::span<const int>()
                              : std::span<const int>(labels_).subspan(first, n));
      diffusion_.training_loss(out_, shard_x0_, shard_x_t_, shard_noise_, t, loss_, grad_,
                               std::span<const Real>(weights_).subspan(first, n));
      grad_ *= static_cast<Real>(r.size()) / static_cast<Real>(batch);  // of the batch's mean
      model_->zero_grad();
      model_->backward(grad_);
      std::vector<Real>& g = shard_grads_[static_cast<std::size_t>(s - mine.begin)];
      g.clear();
      std::size_t b = 0;
      for (const ParameterBlock<Real>& block : blocks()) {
        g.insert(g.end(), block.grad.begin(), block.grad.end());
        maxima_[b] = std::max(maxima_[b], max_magnitude(std::span<const Real>(block.grad)));
        ++b;
      }
      for (std::size_t i = 0; i < n; ++i) {
        const auto k = static_cast<Index>(i);
        sums_[parameter_count + first + i] = ddpm::detail::to_bits(loss_.loss[k]);
        sums_[parameter_count + rows + first + i] = ddpm::detail::to_bits(loss_.mse[k]);
        sums_[parameter_count + 2 * rows + first + i] = ddpm::detail::to_bits(loss_.vlb[k]);
      }
    }
    comm_->all_reduce_max(maxima_);
    scales_.resize(block_count);
    for (std::size_t b = 0; b < block_count; ++b) {
      scales_[b] = std::isfinite(maxima_[b])
                       ? FixedPointScale::for_terms(maxima_[b], options_.shards)
                       : FixedPointScale{};
    }
    std::size_t offset = 0, b = 0;
    for (const ParameterBlock<Real>& block : blocks()) {
      const std::size_t size = block.grad.size();
      if (std::isfinite(maxima_[b])) {
        for_chunks(size, [&](std::size_t begin, std::size_t count) {
          for (const std::vector<Real>& g : shard_grads_) {
            add_fixed(scales_[b], std::span<const Real>(g).subspan(offset + begin, count),
                      std::span<std::int64_t>(sums_).subspan(offset + begin, count));
          }
        });
      }
      offset += size;
      ++b;
    }
    comm_->all_reduce_sum(sums_);
    loss_.loss.resize(batch);
    loss_.mse.resize(batch);
    loss_.vlb.resize(batch);
    double loss = 0.0;
    for (std::size_t i = 0; i < rows; ++i) {
      const auto k = static_cast<Index>(i);
      loss_.loss[k] = ddpm::detail::from_bits<Real>(sums_[parameter_count + i]);
      loss_.mse[k] = ddpm::detail::from_bits<Real>(sums_[parameter_count + rows + i]);
      loss_.vlb[k] = ddpm::detail::from_bits<Real>(sums_[parameter_count + 2 * rows + i]);
      loss += static_cast<double>(weights_[i]) * static_cast<double>(loss_.loss[k]);
    }
    loss /= static_cast<double>(batch);
    loss_.mean = static_cast<Real>(loss);
    if (!std::isfinite(loss)) stop_non_finite(step, "loss", loss);
    offset = 0;
    b = 0;
    for (const ParameterBlock<Real>& block : blocks()) {
      if (!std::isfinite(maxima_[b])) {
        stop_non_finite(step, "gradient of " + block.name + " (largest magnitude)", maxima_[b]);
      }
      const FixedPointScale& scale = scales_[b];
      for_chunks(block.grad.size(), [&](std::size_t begin, std::size_t count) {
        for (std::size_t i = begin; i < begin + count; ++i) {
          block.grad[i] = static_cast<Real>(scale.from_fixed(sums_[offset + i]));
        }
      });
      offset += block.grad.size();
      ++b;
    }
    return loss;
  }

  // body(begin, count) over [0, size) in chunks of 8192, the chunks spread over the threads.
  template <class Body>
  static void for_chunks(std::size_t size, Body&& body) {
    constexpr std::size_t kChunk = 8192;
    const auto chunks = static_cast<Index>((size + kChunk - 1) / kChunk);
    ddpm::detail::parallel_for(chunks, static_cast<Index>(kChunk), [&](Index c) {
      const std::size_t begin = static_cast<std::size_t>(c) * kChunk;
      body(begin, std::min(kChunk, size - begin));
    });
  }

  static std::int64_t single_integer(const Checkpoint& c, const std::string& name) {
    const std::vector<std::int64_t>& values = c.integers(name);
    if (values.size() != 1) {
      throw FormatError("ddpm: checkpoint tensor '" + name + "' must hold one value, not " +
                        std::to_string(values.size()));
    }
    return values[0];
  }

  static std::int64_t parse_integer(const std::string& text, const std::string& key) {
    std::int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || value < 0) {
      throw FormatError("ddpm: checkpoint metadata '" + key +
                        "' is not a non-negative integer: \"" + text + "\"");
    }
    return value;
  }

  // One timestep (step index of the schedule) and weight per row, drawn per group of rows.
  void draw_timesteps(std::uint32_t counter) {
    const bool grouped = options_.timestep_group > 1;
    std::visit(
        [&](auto& s) {
          s.sample(rng_, counter, 0, std::span<int>(grouped ? group_steps_ : steps_),
                   std::span<Real>(grouped ? group_weights_ : weights_));
        },
        timestep_sampler_);
    if (!grouped) return;
    const auto group = static_cast<std::size_t>(options_.timestep_group);
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      steps_[i] = group_steps_[i / group];
      weights_[i] = group_weights_[i / group];
    }
  }

  // Feeds the step's per-row bound terms to the importance sampler; a group of rows sharing a
  // timestep counts once, with its mean.
  void update_timestep_sampler() {
    const std::span<const Real> vlb(loss_.vlb.data(), t_.size());
    if (options_.timestep_group == 1) {
      std::visit([&](auto& s) { s.template update<Real>(steps_, vlb); }, timestep_sampler_);
      return;
    }
    const auto group = static_cast<std::size_t>(options_.timestep_group);
    for (std::size_t g = 0; g < group_steps_.size(); ++g) {
      Real sum = 0;
      for (const Real v : vlb.subspan(g * group, group)) sum += v;
      group_losses_[g] = sum / static_cast<Real>(group);
    }
    std::visit(
        [&](auto& s) {
          s.template update<Real>(group_steps_, std::span<const Real>(group_losses_));
        },
        timestep_sampler_);
  }

  // eps = z + k z_c: one normal per (row, channel), added to the channel's block of the row.
  void add_offset_noise(std::uint32_t counter) {
    const Index channels = options_.offset_noise_channels, width = noise_.cols();
    ddpm::detail::require(width % channels == 0, "offset_noise_channels", channels, [&] {
      return "a divisor of the data width " + std::to_string(width) + " (channels x values)";
    });
    const Index values = width / channels;
    offsets_.resize(static_cast<std::size_t>(channels));
    const Real k = static_cast<Real>(options_.offset_noise);
    for (Index i = 0; i < noise_.rows(); ++i) {
      rng_.normals(stream::offset_noise, static_cast<std::uint32_t>(i), counter, offsets_.data(),
                   channels);
      for (Index c = 0; c < channels; ++c) {
        noise_.row(i).segment(c * values, values).array() +=
            k * offsets_[static_cast<std::size_t>(c)];
      }
    }
  }

  // Replaces labels by kNoLabel with probability options_.label_dropout.
  void drop_labels(std::uint32_t counter) {
    if (options_.label_dropout <= 0.0) return;
    for (std::size_t i = 0; i < labels_.size(); ++i) {
      if (rng_.uniform(stream::labels, static_cast<std::uint32_t>(i), counter, 0) <
          options_.label_dropout) {
        labels_[i] = kNoLabel;
      }
    }
  }

  // Everything of the diffusion that training depends on, with a CRC-32 of the betas' bytes (so
  // a different schedule is refused by restore() even without a RunConfig).
  std::string describe_diffusion() const {
    const DiffusionOptions& o = diffusion_.options();
    std::string betas;
    for (const double beta : diffusion_.schedule().betas()) detail::put_le<double>(betas, beta);
    char crc[16];
    std::snprintf(crc, sizeof crc, "%08x", static_cast<unsigned>(detail::crc32(betas)));
    // Only when on, so that checkpoints from before the option still match (zero terminal SNR is
    // in the betas).
    const std::string snr_text = o.snr_weighting == SnrWeighting::none
                                     ? std::string()
                                     : " snr_weighting=" + std::string(to_string(o.snr_weighting)) +
                                           " snr_gamma=" + detail::exact_number(o.snr_gamma);
    return "T=" + std::to_string(diffusion_.num_timesteps()) +
           " output=" + std::string(to_string(o.output)) +
           " variance=" + std::string(to_string(o.variance)) +
           " loss=" + std::string(to_string(o.loss)) +
           " decoder=" + std::string(to_string(o.decoder)) +
           " clip_x0=" + (o.clip_x0 ? "true" : "false") +
           " rescale_hybrid=" + (o.rescale_hybrid ? "true" : "false") + snr_text +
           " betas_crc32=" + crc;
  }

  Model* model_;
  Communicator* comm_;
  GaussianDiffusion<Real> diffusion_;
  TrainerOptions options_;
  optim::Adam<Real> adam_;
  optim::LrSchedule lr_schedule_;
  std::optional<optim::Ema<Real>> ema_;
  std::variant<UniformTimestepSampler, LossSecondMomentSampler> timestep_sampler_{
      UniformTimestepSampler(1)};
  CounterRng rng_;
  std::int64_t step_ = 0;
  // Workspaces reused every step: step indices of the schedule and their original timesteps.
  std::vector<int> steps_, t_;
  std::vector<int> group_steps_;  // with timestep_group > 1: one draw per group
  std::vector<Real> group_weights_, group_losses_;
  std::vector<int> labels_;
  std::vector<Real> weights_;
  std::vector<Real> offsets_;  // offset noise of one row, one per channel
  Batch<Real> x0_, noise_, x_t_, out_, grad_;
  TrainingLoss<Real> loss_;
  // With shards: this rank's shards' inputs and gradients, the reductions' buffers.
  Batch<Real> shard_x0_, shard_x_t_, shard_noise_;
  std::vector<std::vector<Real>> shard_grads_;
  std::vector<double> maxima_;
  std::vector<std::int64_t> sums_;
  std::vector<FixedPointScale> scales_;
};

}  // namespace ddpm::train
