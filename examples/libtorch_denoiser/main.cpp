// SPDX-License-Identifier: MIT
// A LibTorch network as ddpm's denoiser: TorchDenoiser wraps any torch::nn module with
// forward(x, t) into a ddpm::TrainableDenoiser, so ddpm's Trainer (loss, Adam, EMA, clipping,
// checkpoints) trains it and ddpm's samplers sample from it. Torch only runs the network and its
// autograd; ddpm hands it d loss / d output.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/train/trainer.hpp"

// ---- the network: BENCHMARKS.md's ToyMLP in torch::nn -----------------------------------------
// concat(x, sinusoidal(t)) -> [Linear, SiLU] x depth -> Linear, as ddpm::nn::toy_mlp_config().
struct ToyMlpImpl : torch::nn::Module {
  ToyMlpImpl(std::int64_t dim, std::int64_t width, std::int64_t depth, std::int64_t embedding)
      : half(embedding / 2) {
    torch::nn::Sequential layers;
    std::int64_t in = dim + 2 * half;
    for (std::int64_t k = 0; k < depth; ++k, in = width) {
      layers->push_back(torch::nn::Linear(in, width));
      layers->push_back(torch::nn::SiLU());
    }
    layers->push_back(torch::nn::Linear(in, dim));
    net = register_module("net", layers);
  }
  // improved diffusion's timestep_embedding: [cos(t f_i), sin(t f_i)], f_i = 10000^(-i / half).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) {
    const torch::Tensor freqs = torch::exp(-std::log(10000.0) / static_cast<double>(half) *
                                           torch::arange(half, x.options()));
    const torch::Tensor angles = t.unsqueeze(1) * freqs.unsqueeze(0);
    return net->forward(torch::cat({x, torch::cos(angles), torch::sin(angles)}, 1));
  }
  std::int64_t half;
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(ToyMlp);

// ---- the adaptor: a torch module with forward(x, t) as a ddpm::TrainableDenoiser --------------
// ddpm's optimizer, EMA, clipping and checkpoints work on ParameterBlock views of the torch
// parameters' own storage, so they must stay contiguous CPU tensors of Real at fixed addresses:
// do not call module->to(...) or replace a parameter after wrapping.
template <class Real, class Module>
class TorchDenoiser {
  static constexpr torch::ScalarType kType = torch::CppTypeToScalarType<Real>::value;

 public:
  explicit TorchDenoiser(Module module) : module_(std::move(module)) {
    for (const auto& item : module_->named_parameters()) {
      const torch::Tensor& p = item.value();
      ddpm::detail::require(p.is_contiguous() && p.device().is_cpu() && p.scalar_type() == kType,
                            "parameter " + item.key(), p.sizes(),
                            "a contiguous CPU tensor of the denoiser's Real type");
      params_.push_back(p);
      grads_.push_back(torch::zeros_like(p));
      const auto n = static_cast<std::size_t>(p.numel());
      blocks_.push_back({item.key(), {p.data_ptr<Real>(), n}, {grads_.back().data_ptr<Real>(), n}});
    }
  }
  TorchDenoiser(const TorchDenoiser&) = delete;  // a copy would share the module's parameters
  TorchDenoiser& operator=(const TorchDenoiser&) = delete;

  void predict(const ddpm::Batch<Real>& x_t, std::span<const int> t, ddpm::Batch<Real>& out) {
    run(x_t, t, out);
  }
  // Real-valued timesteps (ddpm::ContinuousTimeDenoiser), for the grid solvers.
  void predict(const ddpm::Batch<Real>& x_t, std::span<const double> t, ddpm::Batch<Real>& out) {
    run(x_t, t, out);
  }

  // Adds d loss / d parameters for the last (training-mode) predict, given d loss / d out.
  void backward(const ddpm::Batch<Real>& grad_out) {
    ddpm::detail::require(output_.defined(), "backward()", "no graph",
                          "a predict() in training mode before each backward()");
    ddpm::detail::require_shape(
        grad_out.rows() == output_.size(0) && grad_out.cols() == output_.size(1), "grad_out",
        grad_out.rows(), grad_out.cols(), "the shape of the last predict() output");
    const torch::Tensor g = torch::from_blob(const_cast<Real*>(grad_out.data()),
                                             {grad_out.rows(), grad_out.cols()}, kType);
    // autograd::grad returns the gradients instead of accumulating into p.grad(), a tensor that
    // autograd may replace; adding them into our own buffers keeps the blocks' grad views valid.
    const std::vector<torch::Tensor> grads =
        torch::autograd::grad({output_}, params_, {g}, false, false, /*allow_unused=*/true);
    output_ = torch::Tensor();  // frees the graph
    for (std::size_t k = 0; k < grads.size(); ++k) {
      if (grads[k].defined()) grads_[k].add_(grads[k]);
    }
  }
  void zero_grad() {
    for (torch::Tensor& g : grads_) g.zero_();
  }
  std::span<ddpm::ParameterBlock<Real>> parameters() { return blocks_; }

  // ddpm's samplers switch the model to inference for their call: no graph, dropout off.
  [[nodiscard]] bool training() const { return module_->is_training(); }
  void set_training(bool on) { module_->train(on); }

 private:
  template <class Time>
  void run(const ddpm::Batch<Real>& x_t, std::span<const Time> t, ddpm::Batch<Real>& out) {
    ddpm::detail::require(static_cast<ddpm::Index>(t.size()) == x_t.rows(), "t.size()", t.size(),
                          "x_t.rows()");
    // A copy: autograd keeps the input until backward(), and ddpm does not promise x_t lives on.
    const torch::Tensor x =
        torch::from_blob(const_cast<Real*>(x_t.data()), {x_t.rows(), x_t.cols()}, kType).clone();
    const torch::Tensor time =
        torch::from_blob(const_cast<Time*>(t.data()), {static_cast<std::int64_t>(t.size())},
                         torch::CppTypeToScalarType<Time>::value)
            .to(kType);
    torch::Tensor y;
    if (training()) {
      y = output_ = module_->forward(x, time);
    } else {
      const torch::NoGradGuard no_grad;
      y = module_->forward(x, time);
      output_ = torch::Tensor();
    }
    y = y.detach().contiguous();  // row-major n x d, as ddpm::Batch
    out.resize(y.size(0), y.size(1));
    std::copy_n(y.data_ptr<Real>(), y.numel(), out.data());
  }

  Module module_;
  std::vector<torch::Tensor> params_, grads_;
  std::vector<ddpm::ParameterBlock<Real>> blocks_;
  torch::Tensor output_;  // the last training-mode output, with its graph
};

static_assert(ddpm::TrainableDenoiser<TorchDenoiser<float, ToyMlp>, float>);
static_assert(ddpm::ContinuousTimeDenoiser<TorchDenoiser<float, ToyMlp>, float>);

// ---- training and sampling, the same for any TrainableDenoiser --------------------------------
struct Options {
  std::int64_t steps = 3000, batch = 256, width = 256, samples = 2000;
  double lr = 1e-3;
  int threads = 0;
  std::filesystem::path out = ".";
  bool compare = false, check = false;
};

struct Result {
  double first_loss, last_loss, ms_per_step, ddim_seconds, mmd2_ddim, mmd2_ddpm, near_ddim,
      near_ddpm;
  bool checkpoint_restores;
};

// The share of points within 3 standard deviations of one of 8gaussians' modes.
double near_modes(const ddpm::Batch<float>& x) {
  const ddpm::GaussianMixture mix =
      *ddpm::data::toy_mixture(ddpm::data::ToyDataset::eight_gaussians);
  ddpm::Index near = 0;
  for (ddpm::Index i = 0; i < x.rows(); ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (ddpm::Index k = 0; k < mix.means.rows(); ++k)
      best = std::min(best, (x.row(i).cast<double>() - mix.means.row(k)).norm());
    near += best < 3.0 * mix.stds[0] ? 1 : 0;
  }
  return static_cast<double>(near) / static_cast<double>(x.rows());
}

template <class Model>
Result train_and_sample(Model& model, const Options& o, const std::string& name) {
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(1000));
  ddpm::train::Trainer<float, Model> trainer(model, diffusion,
                                             {.batch_size = o.batch,
                                              .steps = o.steps,
                                              .adam = {.learning_rate = o.lr},
                                              .grad_clip = 1.0,
                                              .ema_decay = 0.995});
  const auto data = [](std::int64_t step, ddpm::Index n, ddpm::Batch<float>& out) {
    out = ddpm::data::sample_toy2d<float>(ddpm::data::ToyDataset::eight_gaussians, n, 1, step * n);
  };
  std::vector<double> losses;
  const auto start = std::chrono::steady_clock::now();
  while (trainer.step_count() < o.steps) losses.push_back(trainer.step(data).loss);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Mean loss over the first 20 steps and the last tenth of the run (one step's loss is noisy).
  const auto tenth = static_cast<std::ptrdiff_t>(std::max<std::size_t>(1, losses.size() / 10));
  const auto mean = [](auto begin, std::ptrdiff_t n) {
    return std::accumulate(begin, begin + n, 0.0) / static_cast<double>(n);
  };

  // A checkpoint written and read back through the parameter views restores the network exactly
  // (after its parameters are overwritten), EMA and Adam state included.
  const ddpm::Batch<float> probe = ddpm::Batch<float>::Random(16, 2);
  const std::vector<int> probe_t(16, 500);
  ddpm::Batch<float> before, after;
  model.predict(probe, probe_t, before);
  trainer.checkpoint("toy").save(o.out / (name + ".ckpt"));
  for (const ddpm::ParameterBlock<float>& block : model.parameters())
    std::fill(block.value.begin(), block.value.end(), 0.0f);
  trainer.restore(ddpm::train::Checkpoint::load(o.out / (name + ".ckpt")), "toy");
  model.predict(probe, probe_t, after);

  const auto ema = trainer.ema_weights();  // sample with the averaged weights
  const ddpm::CounterRng rng(2);
  const auto sampling = std::chrono::steady_clock::now();
  const ddpm::Batch<float> ddim = ddpm::sample({.kind = ddpm::SamplerKind::ddim, .steps = 50},
                                               diffusion, model, o.samples, 2, rng);
  const double ddim_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sampling).count();
  const ddpm::Batch<float> ancestral = ddpm::sample(
      {.kind = ddpm::SamplerKind::ancestral, .steps = 100}, diffusion, model, o.samples, 2, rng);
  ddpm::io::scatter_png(o.out / (name + "_ddim50.png"), ddim, name + ", DDIM-50");
  const ddpm::Batch<double> fresh =
      ddpm::data::sample_toy2d<double>(ddpm::data::ToyDataset::eight_gaussians, o.samples, 3);
  return {mean(losses.begin(), std::min<std::ptrdiff_t>(20, std::ssize(losses))),
          mean(losses.end() - tenth, tenth),
          1e3 * seconds / static_cast<double>(o.steps),
          ddim_seconds,
          ddpm::eval::mmd2_rbf(ddim.cast<double>(), fresh),
          ddpm::eval::mmd2_rbf(ancestral.cast<double>(), fresh),
          near_modes(ddim),
          near_modes(ancestral),
          before == after};
}

void report(const std::string& name, const Result& r) {
  std::printf(
      "%-8s loss %.4f (first 20 steps) -> %.4f (last tenth), %.2f ms/step; "
      "DDIM-50 %.2f s; MMD^2 DDIM-50 %.2e, ddpm-100 %.2e; near a mode %.1f%%, %.1f%%\n",
      name.c_str(), r.first_loss, r.last_loss, r.ms_per_step, r.ddim_seconds, r.mmd2_ddim,
      r.mmd2_ddpm, 100.0 * r.near_ddim, 100.0 * r.near_ddpm);
}

// ---- checks of the adaptor's contract (--check) -----------------------------------------------
// In double: backward() against central differences taken through the blocks' value views, and
// a second backward() adding to the first.
bool check_gradients() {
  torch::manual_seed(3);
  ToyMlp net(2, 8, 2, 8);
  net->to(torch::kDouble);  // before wrapping: the views are taken at construction
  TorchDenoiser<double, ToyMlp> model(net);
  const ddpm::Batch<double> x =
      ddpm::data::sample_toy2d<double>(ddpm::data::ToyDataset::eight_gaussians, 4, 5);
  const std::vector<int> t = {0, 10, 500, 999};
  const ddpm::Batch<double> g = x.array() + 0.5;  // any cotangent d loss / d out
  ddpm::Batch<double> out;
  const auto loss = [&] {
    model.predict(x, t, out);
    return (out.array() * g.array()).sum();
  };
  model.zero_grad();
  loss();
  model.backward(g);
  double fd_error = 0.0, add_error = 0.0;
  std::vector<std::vector<double>> first;
  for (const ddpm::ParameterBlock<double>& block : model.parameters()) {
    std::vector<double> numeric(block.value.size());
    first.emplace_back(block.grad.begin(), block.grad.end());
    ddpm::nn::numeric_gradient(loss, block.value, std::span<double>(numeric));
    fd_error = std::max(fd_error, ddpm::nn::max_gradient_error<double>(first.back(), numeric));
  }
  loss();
  model.backward(g);
  std::size_t k = 0;
  for (const ddpm::ParameterBlock<double>& block : model.parameters()) {
    for (std::size_t i = 0; i < block.grad.size(); ++i)
      add_error = std::max(add_error, std::abs(block.grad[i] - 2.0 * first[k][i]));
    ++k;
  }
  model.set_training(false);  // inference builds no graph, so backward() refuses
  loss();
  bool refused = false;
  try {
    model.backward(g);
  } catch (const ddpm::InvalidArgument&) {
    refused = true;
  }
  std::printf(
      "check: backward vs finite differences %.2e; a second backward adds %.2e; "
      "no graph in inference: %s\n",
      fd_error, add_error, refused ? "yes" : "NO");
  return fd_error < 1e-6 && add_error < 1e-12 && refused;
}

int main(int argc, char** argv) {
  Options o;
  CLI::App app("Train LibTorch's ToyMLP with ddpm's Trainer on 8gaussians and sample it");
  app.add_option("--steps", o.steps, "training steps");
  app.add_option("--batch", o.batch, "batch size");
  app.add_option("--width", o.width, "hidden units per layer (ToyMLP: 256)");
  app.add_option("--lr", o.lr, "Adam learning rate");
  app.add_option("--samples", o.samples, "samples per sampler");
  app.add_option("--threads", o.threads,
                 "torch::set_num_threads (0: leave); also sets ddpm's OpenMP threads, as both use "
                 "the same OpenMP runtime");
  app.add_option("--out", o.out, "directory for the scatter PNGs and checkpoints");
  app.add_flag("--compare", o.compare, "also train ddpm's own nn::Mlp the same way");
  app.add_flag("--check", o.check, "check the adaptor and the results; exit 1 if one fails");
  CLI11_PARSE(app, argc, argv);
  std::filesystem::create_directories(o.out);
  if (o.threads > 0) torch::set_num_threads(o.threads);
  // Torch and ddpm share one OpenMP runtime, and torch sets its thread count on first use (see
  // README.md): report both counts after that.
  const int ddpm_before = ddpm::detail::max_threads();
  const int torch_threads = torch::get_num_threads();
  std::printf("threads: ddpm's OpenMP %d before torch's first use, %d after; torch %d\n",
              ddpm_before, ddpm::detail::max_threads(), torch_threads);

  bool ok = !o.check || check_gradients();
  torch::manual_seed(1);
  TorchDenoiser<float, ToyMlp> torch_model(ToyMlp(2, o.width, 3, 64));
  const Result r = train_and_sample(torch_model, o, "libtorch");
  report("libtorch", r);
  const auto data = [](ddpm::Index n, std::uint64_t seed) {
    return ddpm::data::sample_toy2d<double>(ddpm::data::ToyDataset::eight_gaussians, n, seed);
  };
  std::printf("data vs data: MMD^2 %.2e; near a mode %.1f%%\n",
              ddpm::eval::mmd2_rbf(data(o.samples, 4), data(o.samples, 3)),
              100.0 * near_modes(data(o.samples, 4).cast<float>()));
  if (o.compare) {
    ddpm::nn::MlpConfig config = ddpm::nn::toy_mlp_config(1);
    config.width = o.width;
    ddpm::nn::Mlp<float> mlp(config);
    report("nn::Mlp", train_and_sample(mlp, o, "mlp"));
  }
  if (o.check) {  // data: 99% near a mode; untrained or broken networks: under 50%
    const bool fell = r.last_loss < 0.6 * r.first_loss;
    const bool near = r.near_ddim > 0.75 && r.near_ddpm > 0.75;
    std::printf(
        "check: a checkpoint restores: %s; loss fell by 40%%: %s; "
        "75%% of samples near a mode: %s\n",
        r.checkpoint_restores ? "yes" : "NO", fell ? "yes" : "NO", near ? "yes" : "NO");
    ok = ok && r.checkpoint_restores && fell && near;
  }
  return ok ? 0 : 1;
}
