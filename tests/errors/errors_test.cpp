// SPDX-License-Identifier: MIT
// docs/errors.md's library table, row by row: each row's call throws InvalidArgument with exactly
// the row's message, every row has a call here and every call a row (so neither can drift).
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/core/thread_tuner.hpp"
#include "ddpm/data/images.hpp"
#include "ddpm/data/shapes3d.hpp"
#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/dormand_prince.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/io/csv.hpp"
#include "ddpm/io/npy.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/classifier.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/dropout.hpp"
#include "ddpm/nn/embedding.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/point_cloud_model.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/clip.hpp"
#include "ddpm/optim/ema.hpp"
#include "ddpm/optim/lr_schedule.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/repaint.hpp"
#include "ddpm/samplers/solvers.hpp"
#include "ddpm/timestep_sampler.hpp"
#include "ddpm/train/trainer.hpp"

namespace {

using namespace ddpm;  // NOLINT: the calls read as in docs/errors.md

// One row: its id, the header it documents, the call as written here (the table's "call"
// column, so the text cannot drift from the code) and the call itself.
struct Row {
  std::string id;
  std::string header;
  std::string code;
  std::function<void()> call;
};

#define DDPM_ROW(id, header, ...)                 \
  Row {                                           \
    id, header, #__VA_ARGS__, [] { __VA_ARGS__; } \
  }

// Small fixtures the calls share.
inline GaussianDiffusion<double> diffusion(int T = 10) {
  return GaussianDiffusion<double>(NoiseSchedule::cosine(T));
}
inline std::vector<double> betas(std::initializer_list<double> b) { return b; }
constexpr double nan = std::numeric_limits<double>::quiet_NaN();

std::vector<Row> rows() {
  return {
    // ddpm/schedule.hpp
    DDPM_ROW("schedule.linear.T", "ddpm/schedule.hpp", (void)NoiseSchedule::linear(0)),
        DDPM_ROW("schedule.linear.T-small", "ddpm/schedule.hpp", (void)NoiseSchedule::linear(20)),
        DDPM_ROW("schedule.cosine.T", "ddpm/schedule.hpp", (void)NoiseSchedule::cosine(0)),
        DDPM_ROW("schedule.cosine.s", "ddpm/schedule.hpp", (void)NoiseSchedule::cosine(10, 0.0)),
        DDPM_ROW("schedule.cosine.max_beta", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::cosine(10, 0.008, 1.0)),
        DDPM_ROW("schedule.betas.empty", "ddpm/schedule.hpp", (void)NoiseSchedule(betas({}))),
        DDPM_ROW("schedule.betas.range", "ddpm/schedule.hpp",
                 (void)NoiseSchedule(betas({0.1, 1.5, 0.2}))),
        DDPM_ROW("schedule.betas.nan", "ddpm/schedule.hpp", (void)NoiseSchedule(betas({nan}))),
        DDPM_ROW("schedule.respaced.empty", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::cosine(10).respaced(std::vector<int>{})),
        DDPM_ROW("schedule.respaced.range", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::cosine(10).respaced(std::vector<int>{0, 10})),
        DDPM_ROW("schedule.respaced.order", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::cosine(10).respaced(std::vector<int>{5, 3})),
        DDPM_ROW("schedule.spacing.text", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::cosine(10).respaced("every 2")),
        DDPM_ROW("schedule.spacing.count", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::cosine(10).respaced("ddim11")),
        DDPM_ROW("schedule.zero_terminal_snr.respaced", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::cosine(10).respaced("5").zero_terminal_snr()),
        DDPM_ROW("schedule.zero_terminal_snr.T", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::linear(1).zero_terminal_snr()),
        DDPM_ROW("schedule.timestep_at_level", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::cosine(10).timestep_at_level(0.0)),
        DDPM_ROW("schedule.index_of", "ddpm/schedule.hpp",
                 (void)NoiseSchedule::cosine(10).respaced("5").index_of(1)),

        // ddpm/diffusion.hpp
        DDPM_ROW("diffusion.loss.simple-learned", "ddpm/diffusion.hpp",
                 GaussianDiffusion<double>(NoiseSchedule::cosine(10),
                                           {.variance = VarianceKind::learned_range})),
        DDPM_ROW("diffusion.loss.hybrid-fixed", "ddpm/diffusion.hpp",
                 GaussianDiffusion<double>(NoiseSchedule::cosine(10), {.loss = LossKind::hybrid})),
        DDPM_ROW("diffusion.output.eps-zero-snr", "ddpm/diffusion.hpp",
                 GaussianDiffusion<double>(NoiseSchedule::cosine(10).zero_terminal_snr())),
        DDPM_ROW(
            "diffusion.snr_gamma", "ddpm/diffusion.hpp",
            GaussianDiffusion<double>(NoiseSchedule::cosine(10),
                                      {.snr_weighting = SnrWeighting::min_snr, .snr_gamma = 0.0})),
        DDPM_ROW("diffusion.snr_weighting.kl", "ddpm/diffusion.hpp",
                 GaussianDiffusion<double>(
                     NoiseSchedule::cosine(10),
                     {.loss = LossKind::kl, .snr_weighting = SnrWeighting::min_snr})),
        DDPM_ROW("enum.parse", "ddpm/core/enum_names.hpp", (void)parse_enum<ModelOutput>("noise")),

        // ddpm/samplers/*.hpp
        DDPM_ROW("ddim.eta", "ddpm/samplers/ddim.hpp", DdimSampler<double>(diffusion(), 1.5)),
        DDPM_ROW("grid.steps", "ddpm/samplers/grid.hpp",
                 (void)NoiseGrid::make(NoiseSchedule::cosine(10), GridKind::evenly, 11)),
        DDPM_ROW("grid.steps.karras", "ddpm/samplers/grid.hpp",
                 (void)NoiseGrid::make(NoiseSchedule::cosine(10), GridKind::karras, 0)),
        DDPM_ROW("grid.rho", "ddpm/samplers/grid.hpp",
                 (void)NoiseGrid::make(NoiseSchedule::cosine(10), GridKind::karras, 5, 0.0)),
        DDPM_ROW(
            "grid.respaced", "ddpm/samplers/grid.hpp",
            (void)NoiseGrid::make(NoiseSchedule::cosine(10).respaced("5"), GridKind::evenly, 5)),
        DDPM_ROW("grid.levels.empty", "ddpm/samplers/grid.hpp",
                 (void)NoiseGrid::from_levels(NoiseSchedule::cosine(10), {})),
        DDPM_ROW("grid.levels.order", "ddpm/samplers/grid.hpp",
                 (void)NoiseGrid::from_levels(NoiseSchedule::cosine(10), {1.0, 2.0})),
        DDPM_ROW("solver.eta", "ddpm/samplers/solvers.hpp",
                 SolverSampler<double>(
                     diffusion(), NoiseGrid::make(NoiseSchedule::cosine(10), GridKind::karras, 5),
                     SolverKind::euler, {.eta = -1.0})),
        DDPM_ROW("solver.s_churn", "ddpm/samplers/solvers.hpp",
                 SolverSampler<double>(
                     diffusion(), NoiseGrid::make(NoiseSchedule::cosine(10), GridKind::karras, 5),
                     SolverKind::euler, {.s_churn = nan})),
        DDPM_ROW("solver.s_noise", "ddpm/samplers/solvers.hpp",
                 SolverSampler<double>(
                     diffusion(), NoiseGrid::make(NoiseSchedule::cosine(10), GridKind::karras, 5),
                     SolverKind::euler, {.s_noise = -1.0})),
        DDPM_ROW("solver.unipc_order", "ddpm/samplers/solvers.hpp",
                 SolverSampler<double>(
                     diffusion(), NoiseGrid::make(NoiseSchedule::cosine(10), GridKind::karras, 5),
                     SolverKind::unipc, {.unipc_order = 4})),
        DDPM_ROW("repaint.steps", "ddpm/samplers/repaint.hpp", (void)repaint_schedule(0, 1, 1)),
        DDPM_ROW("repaint.jump_length", "ddpm/samplers/repaint.hpp",
                 (void)repaint_schedule(10, 0, 1)),
        DDPM_ROW("repaint.resample_count", "ddpm/samplers/repaint.hpp",
                 (void)repaint_schedule(10, 1, 0)),

        // ddpm/guidance.hpp, ddpm/timestep_sampler.hpp
        DDPM_ROW("guidance.weight", "ddpm/guidance.hpp", nn::Mlp<double> model({.num_classes = 2});
                 std::vector<int> labels{0};
                 ClassifierFreeGuidance<double, nn::Mlp<double>>(model, labels, nan)),
        DDPM_ROW("guidance.rescale", "ddpm/guidance.hpp", nn::Mlp<double> model({.num_classes = 2});
                 std::vector<int> labels{0};
                 ClassifierFreeGuidance<double, nn::Mlp<double>>(model, labels, 1.0, 2.0)),
        DDPM_ROW("timesteps.uniform.T", "ddpm/timestep_sampler.hpp", UniformTimestepSampler(0)),
        DDPM_ROW("timesteps.importance.T", "ddpm/timestep_sampler.hpp", LossSecondMomentSampler(0)),
        DDPM_ROW("timesteps.importance.history", "ddpm/timestep_sampler.hpp",
                 LossSecondMomentSampler(10, 0)),
        DDPM_ROW("timesteps.importance.uniform_fraction", "ddpm/timestep_sampler.hpp",
                 LossSecondMomentSampler(10, 10, 0.0)),

        // ddpm/train/trainer.hpp
        DDPM_ROW("trainer.batch_size", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
                 train::Trainer<double, nn::Mlp<double>>(model, diffusion(), {.batch_size = 0})),
        DDPM_ROW("trainer.steps", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
                 train::Trainer<double, nn::Mlp<double>>(model, diffusion(), {.steps = 0})),
        DDPM_ROW("trainer.learning_rate", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
                 train::Trainer<double, nn::Mlp<double>>(model, diffusion(),
                                                         {.adam = {.learning_rate = 0.0}})),
        DDPM_ROW("trainer.grad_clip", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
                 train::Trainer<double, nn::Mlp<double>>(model, diffusion(), {.grad_clip = -1.0})),
        DDPM_ROW("trainer.ema_decay", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
                 train::Trainer<double, nn::Mlp<double>>(model, diffusion(), {.ema_decay = 1.0})),
        DDPM_ROW(
            "trainer.label_dropout", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
            train::Trainer<double, nn::Mlp<double>>(model, diffusion(), {.label_dropout = 1.5})),
        DDPM_ROW("trainer.timestep_group", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
                 train::Trainer<double, nn::Mlp<double>>(model, diffusion(),
                                                         {.batch_size = 10, .timestep_group = 3})),
        DDPM_ROW(
            "trainer.offset_noise", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
            train::Trainer<double, nn::Mlp<double>>(model, diffusion(), {.offset_noise = -0.1})),
        DDPM_ROW("trainer.offset_noise_channels", "ddpm/train/trainer.hpp",
                 nn::Mlp<double> model({});
                 train::Trainer<double, nn::Mlp<double>>(model, diffusion(),
                                                         {.offset_noise_channels = 0})),
        DDPM_ROW("trainer.warmup_steps", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
                 train::Trainer<double, nn::Mlp<double>>(
                     model, diffusion(),
                     {.steps = 10, .warmup_steps = 10, .decay = optim::LrDecay::cosine})),
        DDPM_ROW("trainer.shards", "ddpm/train/trainer.hpp", nn::Mlp<double> model({});
                 train::Trainer<double, nn::Mlp<double>>(model, diffusion(),
                                                         {.batch_size = 4, .shards = 5})),
        DDPM_ROW("communicator.split_evenly.parts", "ddpm/core/communicator.hpp",
                 (void)split_evenly(10, 0, 0)),
        DDPM_ROW("communicator.split_evenly.part", "ddpm/core/communicator.hpp",
                 (void)split_evenly(10, 3, 3)),
        DDPM_ROW("exact_sum.for_terms.max_abs", "ddpm/core/exact_sum.hpp",
                 (void)FixedPointScale::for_terms(-1.0, 2)),
        DDPM_ROW("exact_sum.for_terms.terms", "ddpm/core/exact_sum.hpp",
                 (void)FixedPointScale::for_terms(1.0, 0)),
        DDPM_ROW("exact_sum.add_fixed", "ddpm/core/exact_sum.hpp", std::vector<float> values(3);
                 std::vector<std::int64_t> sums(2);
                 add_fixed(FixedPointScale{}, std::span<const float>(values),
                           std::span<std::int64_t>(sums))),
        DDPM_ROW("thread_tuner.max_threads", "ddpm/core/thread_tuner.hpp", ThreadTuner(0)),
        DDPM_ROW("thread_tuner.probe_steps", "ddpm/core/thread_tuner.hpp",
                 ThreadTuner(2, {.probe_steps = 0})),
        DDPM_ROW("thread_tuner.reprobe_seconds", "ddpm/core/thread_tuner.hpp",
                 ThreadTuner(2, {.reprobe_seconds = -1.0})),
        DDPM_ROW("thread_tuner.drift", "ddpm/core/thread_tuner.hpp",
                 ThreadTuner(2, {.drift = 1.0})),

        // ddpm/optim/*.hpp
        DDPM_ROW("adam.learning_rate", "ddpm/optim/adam.hpp",
                 optim::Adam<double>({.learning_rate = -1.0})),
        DDPM_ROW("adam.beta1", "ddpm/optim/adam.hpp", optim::Adam<double>({.beta1 = 1.0})),
        DDPM_ROW("adam.beta2", "ddpm/optim/adam.hpp", optim::Adam<double>({.beta2 = -0.1})),
        DDPM_ROW("adam.eps", "ddpm/optim/adam.hpp", optim::Adam<double>({.eps = 0.0})),
        DDPM_ROW("adam.weight_decay", "ddpm/optim/adam.hpp",
                 optim::AdamW<double>({.weight_decay = -1.0})),
        DDPM_ROW("ema.decay", "ddpm/optim/ema.hpp", std::vector<double> p(3);
                 optim::Ema<double>(p, {.decay = 1.5})),
        DDPM_ROW("lr_schedule.base_lr", "ddpm/optim/lr_schedule.hpp",
                 optim::LrSchedule({.base_lr = 0.0})),
        DDPM_ROW("lr_schedule.warmup_steps", "ddpm/optim/lr_schedule.hpp",
                 optim::LrSchedule({.warmup_steps = -1})),
        DDPM_ROW("lr_schedule.total_steps", "ddpm/optim/lr_schedule.hpp",
                 optim::LrSchedule(
                     {.warmup_steps = 10, .decay = optim::LrDecay::linear, .total_steps = 10})),
        DDPM_ROW("lr_schedule.final_lr", "ddpm/optim/lr_schedule.hpp",
                 optim::LrSchedule({.base_lr = 1e-3,
                                    .decay = optim::LrDecay::cosine,
                                    .total_steps = 10,
                                    .final_lr = 1.0})),
        DDPM_ROW("clip.max_norm", "ddpm/optim/clip.hpp", std::vector<double> g(3);
                 (void)optim::clip_grad_norm(std::span<double>(g), -1.0)),

        // ddpm/nn/*.hpp
        DDPM_ROW("mlp.input_dim", "ddpm/nn/mlp.hpp", nn::Mlp<double>({.input_dim = 0})),
        DDPM_ROW("mlp.output_dim", "ddpm/nn/mlp.hpp", nn::Mlp<double>({.output_dim = 0})),
        DDPM_ROW("mlp.width", "ddpm/nn/mlp.hpp", nn::Mlp<double>({.width = 0})),
        DDPM_ROW("mlp.depth", "ddpm/nn/mlp.hpp", nn::Mlp<double>({.depth = 0})),
        DDPM_ROW("mlp.embedding_dim", "ddpm/nn/mlp.hpp", nn::Mlp<double>({.embedding_dim = 0})),
        DDPM_ROW("mlp.num_classes", "ddpm/nn/mlp.hpp", nn::Mlp<double>({.num_classes = -1})),
        DDPM_ROW("unet.image_channels", "ddpm/nn/unet.hpp",
                 nn::UNet<double>({.image_channels = 0})),
        DDPM_ROW("unet.base_channels", "ddpm/nn/unet.hpp", nn::UNet<double>({.base_channels = 0})),
        DDPM_ROW("unet.channel_mult.empty", "ddpm/nn/unet.hpp",
                 nn::UNet<double>({.channel_mult = {}})),
        DDPM_ROW("unet.channel_mult.entry", "ddpm/nn/unet.hpp",
                 nn::UNet<double>({.channel_mult = {1, 0}})),
        DDPM_ROW("unet.res_blocks", "ddpm/nn/unet.hpp", nn::UNet<double>({.res_blocks = 0})),
        DDPM_ROW("unet.height", "ddpm/nn/unet.hpp", nn::UNet<double>({.height = 30})),
        DDPM_ROW("unet.width", "ddpm/nn/unet.hpp", nn::UNet<double>({.width = 30})),
        DDPM_ROW("unet.groups", "ddpm/nn/unet.hpp", nn::UNet<double>({.groups = 5})),
        DDPM_ROW("unet.dropout", "ddpm/nn/unet.hpp", nn::UNet<double>({.dropout = 1.0})),
        DDPM_ROW("unet.output_channels", "ddpm/nn/unet.hpp",
                 nn::UNet<double>({.output_channels = 0})),
        DDPM_ROW("unet.attention_heads", "ddpm/nn/unet.hpp",
                 nn::UNet<double>({.attention_heads = 0})),
        DDPM_ROW("unet.num_classes", "ddpm/nn/unet.hpp", nn::UNet<double>({.num_classes = -1})),
        DDPM_ROW("classifier.num_classes", "ddpm/nn/classifier.hpp",
                 nn::Classifier<double>({.num_classes = 1})),
        DDPM_ROW("classifier.feature_dim", "ddpm/nn/classifier.hpp",
                 nn::Classifier<double>({.num_classes = 2, .feature_dim = 0})),
        DDPM_ROW("point_cloud_model.latent_dim", "ddpm/nn/point_cloud_model.hpp",
                 nn::PointCloudModel<double>({.latent_dim = 0}, {0.1})),
        DDPM_ROW("point_cloud_model.points_per_shape", "ddpm/nn/point_cloud_model.hpp",
                 nn::PointCloudModel<double>({.points_per_shape = 0}, {0.1})),
        DDPM_ROW("point_cloud_model.kl_weight", "ddpm/nn/point_cloud_model.hpp",
                 nn::PointCloudModel<double>({.kl_weight = -1.0}, {0.1})),
        DDPM_ROW("point_cloud_model.betas", "ddpm/nn/point_cloud_model.hpp",
                 nn::PointCloudModel<double>({}, {0.1, 1.0})),
        DDPM_ROW("linear.in", "ddpm/nn/linear.hpp", nn::ParameterStore<double> store;
                 nn::Linear<double>(store, "fc", 0, 4)),
        DDPM_ROW("linear.out", "ddpm/nn/linear.hpp", nn::ParameterStore<double> store;
                 nn::Linear<double>(store, "fc", 4, 0)),
        DDPM_ROW("conv2d.in_channels", "ddpm/nn/conv2d.hpp", nn::ParameterStore<double> store;
                 nn::Conv2d<double>(store, "conv", 0, 4, 3)),
        DDPM_ROW("conv2d.out_channels", "ddpm/nn/conv2d.hpp", nn::ParameterStore<double> store;
                 nn::Conv2d<double>(store, "conv", 4, 0, 3)),
        DDPM_ROW("conv2d.kernel", "ddpm/nn/conv2d.hpp", nn::ParameterStore<double> store;
                 nn::Conv2d<double>(store, "conv", 4, 4, 2)),
        DDPM_ROW("conv2d.stride", "ddpm/nn/conv2d.hpp", nn::ParameterStore<double> store;
                 nn::Conv2d<double>(store, "conv", 4, 4, 3, 3)),
        DDPM_ROW("conv2d.padding", "ddpm/nn/conv2d.hpp", nn::ParameterStore<double> store;
                 nn::Conv2d<double>(store, "conv", 4, 4, 3, 1, -2)),
        DDPM_ROW("group_norm.channels", "ddpm/nn/group_norm.hpp", nn::ParameterStore<double> store;
                 nn::GroupNorm<double>(store, "norm", 1, 0)),
        DDPM_ROW("group_norm.groups", "ddpm/nn/group_norm.hpp", nn::ParameterStore<double> store;
                 nn::GroupNorm<double>(store, "norm", 3, 8)),
        DDPM_ROW("embedding.dim", "ddpm/nn/embedding.hpp", nn::SinusoidalEmbedding<double>(0)),
        DDPM_ROW("embedding.max_period", "ddpm/nn/embedding.hpp",
                 nn::SinusoidalEmbedding<double>(8, 0.0)),
        DDPM_ROW("label_embedding.num_classes", "ddpm/nn/embedding.hpp",
                 nn::ParameterStore<double> store;
                 nn::LabelEmbedding<double>(store, "label", 0, 8)),
        DDPM_ROW("dropout.p", "ddpm/nn/dropout.hpp", nn::Dropout<double>(1.0)),

        // ddpm/io/*.hpp
        DDPM_ROW("csv.columns", "ddpm/io/csv.hpp",
                 io::write_csv("unused.csv", Eigen::MatrixXd(2, 2), {"x"})),
        DDPM_ROW("csv.column_name", "ddpm/io/csv.hpp",
                 io::write_csv("unused.csv", Eigen::MatrixXd(2, 1), {"a,b"})),
        DDPM_ROW("npy.shape", "ddpm/io/npy.hpp",
                 io::write_npy("unused.npy", {2, 3}, std::vector<double>(5))),
        DDPM_ROW("png.width", "ddpm/io/png.hpp", (void)io::Image::filled(0, 4)),
        DDPM_ROW("png.channels", "ddpm/io/png.hpp", (void)io::Image::filled(4, 4, 2)),
        DDPM_ROW("plot.style.plot_size", "ddpm/io/plot.hpp",
                 io::scatter_png("unused.png", Eigen::MatrixXd(2, 2), "", {}, {.plot_size = 8})),
        DDPM_ROW("plot.style.margin", "ddpm/io/plot.hpp",
                 io::scatter_png("unused.png", Eigen::MatrixXd(2, 2), "", {}, {.margin = -1})),
        DDPM_ROW(
            "plot.frame", "ddpm/io/plot.hpp",
            io::scatter_png("unused.png", Eigen::MatrixXd(2, 2), "", {.x_min = 1, .x_max = 0})),
        DDPM_ROW("plot.tile.zoom", "ddpm/io/plot.hpp",
                 (void)io::tile_images(Eigen::MatrixXd::Zero(1, 4), 1, 2, 2, {.zoom = 0})),
        DDPM_ROW("plot.curve.width", "ddpm/io/plot.hpp", io::CurveOptions options;
                 options.width = 10;
                 (void)io::render_curve(std::vector<double>{1.0, 2.0}, options)),
        DDPM_ROW("plot.moving_average.window", "ddpm/io/plot.hpp",
                 (void)io::moving_average(std::vector<double>{1.0}, -1)),
        DDPM_ROW("progress.total", "ddpm/io/progress.hpp", io::ProgressBar(-1, "train")),
        DDPM_ROW("progress.line_fraction", "ddpm/io/progress.hpp",
                 io::ProgressBar(10, "train", std::cerr, {.line_fraction = 0.0})),
        DDPM_ROW("progress.bar_width", "ddpm/io/progress.hpp",
                 io::ProgressBar(10, "train", std::cerr, {.bar_width = 500})),
        DDPM_ROW("progress.time_limit_seconds", "ddpm/io/progress.hpp",
                 io::ProgressBar(10, "train", std::cerr, {.time_limit_seconds = -1.0})),

        // ddpm/data/*.hpp
        DDPM_ROW("toy2d.n", "ddpm/data/toy2d.hpp",
                 (void)data::sample_toy2d<double>(data::ToyDataset::moons, -1, 0)),
        DDPM_ROW("toy2d.label", "ddpm/data/toy2d.hpp",
                 (void)data::sample_toy2d_class<double>(data::ToyDataset::moons, 2, 10, 0)),
        DDPM_ROW("images.channels", "ddpm/data/images.hpp",
                 (void)data::read_image_folder("unused", 0, 0, 2)),
        DDPM_ROW("images.size", "ddpm/data/images.hpp",
                 (void)data::read_image_folder("unused", 8, 0)),

        // ddpm/eval/*.hpp
        DDPM_ROW("metrics.bandwidth", "ddpm/eval/metrics.hpp",
                 (void)eval::mmd2_rbf(Batch<double>::Zero(2, 2), Batch<double>::Zero(2, 2),
                                      std::vector<double>{0.0})),
        DDPM_ROW("metrics.projections", "ddpm/eval/metrics.hpp",
                 (void)eval::sliced_wasserstein1(Batch<double>::Zero(2, 2),
                                                 Batch<double>::Zero(2, 2), 0)),
        DDPM_ROW("dormand_prince.rtol", "ddpm/eval/dormand_prince.hpp",
                 Batch<double> y = Batch<double>::Zero(1, 1);
                 (void)dormand_prince([](auto, auto, const auto& a, auto& b) { b = a; }, y, 0.0,
                                      1.0, {.rtol = 0.0})),
        DDPM_ROW("dormand_prince.atol", "ddpm/eval/dormand_prince.hpp",
                 Batch<double> y = Batch<double>::Zero(1, 1);
                 (void)dormand_prince([](auto, auto, const auto& a, auto& b) { b = a; }, y, 0.0,
                                      1.0, {.atol = -1.0})),
        DDPM_ROW("dormand_prince.max_steps", "ddpm/eval/dormand_prince.hpp",
                 Batch<double> y = Batch<double>::Zero(1, 1);
                 (void)dormand_prince([](auto, auto, const auto& a, auto& b) { b = a; }, y, 0.0,
                                      1.0, {.max_steps = 0})),
        DDPM_ROW(
            "dormand_prince.interval", "ddpm/eval/dormand_prince.hpp",
            Batch<double> y = Batch<double>::Zero(1, 1);
            (void)dormand_prince([](auto, auto, const auto& a, auto& b) { b = a; }, y, 1.0, 0.0)),
  };
}

#undef DDPM_ROW

// The library rows of docs/errors.md: id -> (call, message), between its markers.
struct DocRow {
  std::string code;
  std::string message;
};

std::string unescape(std::string cell) {
  std::string out;
  for (std::size_t i = 0; i < cell.size(); ++i) {
    if (cell[i] == '\\' && i + 1 < cell.size() && cell[i + 1] == '|') continue;
    out += cell[i];
  }
  return out;
}

// A table row "| `id` | `code` | `message` |": cells split at unescaped pipes, backticks removed.
std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  for (std::size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '|' && line[i - 1] != '\\') {
      out.push_back(cell);
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  for (std::string& c : out) {
    const auto first = c.find_first_not_of(' ');
    const auto last = c.find_last_not_of(' ');
    c = first == std::string::npos ? "" : c.substr(first, last - first + 1);
    if (c.size() >= 2 && c.front() == '`' && c.back() == '`') c = c.substr(1, c.size() - 2);
    c = unescape(c);
  }
  return out;
}

const std::string kDoc = DDPM_ERRORS_DOC;
constexpr const char* kBegin = "<!-- library-rows:begin -->";
constexpr const char* kEnd = "<!-- library-rows:end -->";

std::map<std::string, DocRow> doc_rows(std::vector<std::string>& duplicates) {
  std::ifstream in(kDoc);
  REQUIRE_MESSAGE(in.good(), "cannot open ", kDoc);
  std::map<std::string, DocRow> out;
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.find(kBegin) != std::string::npos) inside = true;
    if (line.find(kEnd) != std::string::npos) inside = false;
    if (!inside || line.rfind("| `", 0) != 0) continue;
    const std::vector<std::string> c = cells(line);
    if (c.size() != 3) {
      FAIL_CHECK("a library row needs 3 cells (id, call, message): ", line);
      continue;
    }
    if (!out.emplace(c[0], DocRow{c[1], c[2]}).second) duplicates.push_back(c[0]);
  }
  return out;
}

std::string escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

// The message the row's call throws, or why it did not throw InvalidArgument.
std::string message_of(const Row& row) {
  try {
    row.call();
  } catch (const InvalidArgument& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(not InvalidArgument) ") + e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST_CASE("errors.md: every library row has a call here and every call a row") {
  std::vector<std::string> duplicates;
  const std::map<std::string, DocRow> doc = doc_rows(duplicates);
  CHECK_MESSAGE(duplicates.empty(), "duplicate ids in docs/errors.md");
  std::map<std::string, int> ids;
  for (const Row& row : rows()) {
    ++ids[row.id];
    CHECK_MESSAGE(doc.count(row.id) == 1, "no row in docs/errors.md for ", row.id);
  }
  for (const auto& entry : ids) {
    CHECK_MESSAGE(entry.second == 1, "duplicate test id ", entry.first);
  }
  for (const auto& entry : doc) {
    CHECK_MESSAGE(ids.count(entry.first) == 1, "docs/errors.md row ", entry.first, " has no test");
  }
  CHECK(doc.size() >= 100);  // the table did not silently lose its rows
}

TEST_CASE("errors.md: each library row's call throws InvalidArgument with the row's message") {
  std::vector<std::string> duplicates;
  const std::map<std::string, DocRow> doc = doc_rows(duplicates);
  // DDPM_ERRORS_TABLE=FILE writes the rows as they are now (to paste into docs/errors.md after a
  // deliberate change of a message).
  const char* dump = std::getenv("DDPM_ERRORS_TABLE");
  std::ofstream table;
  if (dump != nullptr) table.open(dump);
  std::string header;
  for (const Row& row : rows()) {
    const std::string message = message_of(row);
    if (table.is_open()) {
      if (row.header != header) {
        header = row.header;
        table << "\n### `" << header << "`\n\n| id | invalid call | message |\n|---|---|---|\n";
      }
      table << "| `" << row.id << "` | `" << escape(row.code) << "` | `" << escape(message)
            << "` |\n";
    }
    const auto it = doc.find(row.id);
    if (it == doc.end()) continue;  // reported by the other test case
    INFO("row ", row.id);
    CHECK(it->second.code == row.code);
    CHECK(it->second.message == message);
    // The contract of every library message: it names the parameter, the value and what is
    // allowed.
    CHECK(message.rfind("ddpm: invalid ", 0) == 0);
    CHECK(message.find(" = ") != std::string::npos);
    CHECK(message.find("; allowed: ") != std::string::npos);
  }
}
