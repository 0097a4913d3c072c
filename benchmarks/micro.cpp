// SPDX-License-Identifier: MIT
// Google Benchmark micro-benchmarks of the hot kernels: the ToyMLP train step and forward pass at
// the reference shapes, one sampler step over 10k points, q_sample, the loss and the RNG, the three
// matrix products of a ToyMLP layer on ddpm's GEMM and on Eigen's, and the UNetSmall layers
// (Conv2d, GroupNorm + SiLU, attention) at its batch-64 shapes.
#include <benchmark/benchmark.h>

#include <string>
#include <utility>
#include <vector>

#include "ddpm/ddpm.hpp"
#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/optim/adam.hpp"

namespace {

using ddpm::Batch;
using ddpm::Index;

// Multiply-adds of one ToyMLP forward per sample: 66*256 + 2*256*256 + 256*2.
constexpr double kToyMlpMacs = 66.0 * 256 + 2.0 * 256 * 256 + 256.0 * 2;

Batch<float> normals(Index rows, Index cols, std::uint32_t stream) {
  Batch<float> x(rows, cols);
  ddpm::CounterRng(1).fill_normal(x, stream, 0, 0);
  return x;
}

std::vector<int> timesteps(Index n) {
  std::vector<int> t(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i)
    t[static_cast<std::size_t>(i)] = static_cast<int>((i * 7919) % 1000);
  return t;
}

void BM_ToyMlpTrainStep(benchmark::State& state) {
  const Index batch = state.range(0);
  ddpm::nn::Mlp<float> model(ddpm::nn::toy_mlp_config(1));
  ddpm::optim::Adam<float> adam;
  const Batch<float> x = normals(batch, 2, 1), grad = normals(batch, 2, 2);
  const std::vector<int> t = timesteps(batch);
  Batch<float> out;
  for (auto _ : state) {
    model.predict(x, t, out);
    model.zero_grad();
    model.backward(grad);
    adam.step(model.parameters());
    benchmark::DoNotOptimize(out.data());
  }
  // forward 1x, backward 2x the forward's multiply-adds; 2 FLOP per multiply-add.
  state.counters["GFLOP/s"] = benchmark::Counter(6.0 * kToyMlpMacs * static_cast<double>(batch),
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_ToyMlpTrainStep)->Arg(256)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ToyMlpForward(benchmark::State& state) {
  const Index batch = state.range(0);
  ddpm::nn::Mlp<float> model(ddpm::nn::toy_mlp_config(1));
  model.set_training(false);
  const Batch<float> x = normals(batch, 2, 1);
  const std::vector<int> t = timesteps(batch);
  Batch<float> out;
  for (auto _ : state) {
    model.predict(x, t, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * kToyMlpMacs * static_cast<double>(batch),
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_ToyMlpForward)->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();

// One sampler step at t = 500 over 10,000 2D points, given the model output.
template <class Sampler>
void sampler_step(benchmark::State& state, Sampler sampler) {
  const Index n = 10000;
  const Batch<float> x = normals(n, 2, 1), eps = normals(n, 2, 2);
  Batch<float> next;
  const ddpm::CounterRng rng(3);
  for (auto _ : state) {
    sampler.step(eps, 500, x, next, rng);
    benchmark::DoNotOptimize(next.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_AncestralStep(benchmark::State& state) {
  sampler_step(state, ddpm::AncestralSampler<float>{
                          ddpm::GaussianDiffusion<float>(ddpm::NoiseSchedule::linear(1000))});
}
BENCHMARK(BM_AncestralStep)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_DdimStep(benchmark::State& state) {
  // "ddim50" keeps 0, 20, ..., 980, so t = 500 is one of its steps.
  sampler_step(state, ddpm::DdimSampler<float>{ddpm::GaussianDiffusion<float>(
                          ddpm::NoiseSchedule::linear(1000).respaced("ddim50"))});
}
BENCHMARK(BM_DdimStep)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_QSample(benchmark::State& state) {
  const Index n = state.range(0);
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(1000));
  const Batch<float> x0 = normals(n, 2, 1), noise = normals(n, 2, 2);
  const std::vector<int> t = timesteps(n);
  Batch<float> x_t;
  for (auto _ : state) {
    diffusion.q_sample(x0, t, noise, x_t);
    benchmark::DoNotOptimize(x_t.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_QSample)->Arg(4096)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_TrainingLoss(benchmark::State& state) {
  const Index n = state.range(0);
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(1000));
  const Batch<float> x0 = normals(n, 2, 1), noise = normals(n, 2, 2), out = normals(n, 2, 3);
  const std::vector<int> t = timesteps(n);
  Batch<float> x_t, grad;
  diffusion.q_sample(x0, t, noise, x_t);
  ddpm::TrainingLoss<float> loss;
  for (auto _ : state) {
    diffusion.training_loss(out, x0, x_t, noise, t, loss, grad);
    benchmark::DoNotOptimize(grad.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_TrainingLoss)->Arg(4096)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_FillNormal(benchmark::State& state) {
  Batch<float> x(10000, 2);
  const ddpm::CounterRng rng(3);
  std::uint32_t step = 0;
  for (auto _ : state) {
    rng.fill_normal(x, ddpm::stream::sampler_noise, 0, step++);
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(state.iterations() * x.size());
}
BENCHMARK(BM_FillNormal)->Unit(benchmark::kMicrosecond)->UseRealTime();

// ---- UNetSmall layers at batch 64 -------------------------------------------------------------

constexpr Index kUNetBatch = 64;

/// `flop` per iteration reported as GFLOP/s.
void report_gflops(benchmark::State& state, double flop) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      flop, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// ---- the matrix products of the ToyMLP train step: ddpm's packed GEMM vs Eigen's ------------

/// The three products of a 256-wide layer at batch 4096: 0 forward x W, 1 weight gradient
/// x^T dz (depth 4096), 2 input gradient dz W^T.
struct ProductCase {
  explicit ProductCase(const benchmark::State& state)
      : kind(state.range(0)),
        a(normals(4096, 256, 1)),
        b(normals(kind == 1 ? 4096 : 256, 256, 2)),
        c(kind == 1 ? 256 : 4096, 256),
        label(kind == 0   ? "x W"
              : kind == 1 ? "x^T dz"
                          : "dz W^T") {}
  Index kind;
  Batch<float> a, b, c;
  std::string label;
};

void BM_GemmDdpm(benchmark::State& state) {
  ProductCase p(state);
  using ddpm::nn::detail::strided;
  for (auto _ : state) {
    if (p.kind == 0) {
      ddpm::nn::detail::gemm(4096, 256, 256, strided(p.a), strided(p.b), p.c.data(), 256, false);
    } else if (p.kind == 1) {
      ddpm::nn::detail::gemm(256, 256, 4096, strided(p.a).transposed(), strided(p.b), p.c.data(),
                             256, false);
    } else {
      ddpm::nn::detail::gemm(4096, 256, 256, strided(p.a), strided(p.b).transposed(), p.c.data(),
                             256, false);
    }
    benchmark::DoNotOptimize(p.c.data());
  }
  state.SetLabel(p.label);
  report_gflops(state, 2.0 * 4096 * 256 * 256);
}
BENCHMARK(BM_GemmDdpm)->DenseRange(0, 2)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_GemmEigen(benchmark::State& state) {
  ProductCase p(state);
  for (auto _ : state) {
    if (p.kind == 0) {
      p.c.noalias() = p.a * p.b;
    } else if (p.kind == 1) {
      p.c.noalias() = p.a.transpose() * p.b;
    } else {
      p.c.noalias() = p.a * p.b.transpose();
    }
    benchmark::DoNotOptimize(p.c.data());
  }
  state.SetLabel(p.label);
  report_gflops(state, 2.0 * 4096 * 256 * 256);
}
BENCHMARK(BM_GemmEigen)->DenseRange(0, 2)->Unit(benchmark::kMicrosecond)->UseRealTime();

/// One layer in a store of its own, bound (the layer contract of parameter_store.hpp).
template <class Layer>
struct Bound {
  template <class... Args>
  explicit Bound(Args&&... args) : layer(store, "layer", std::forward<Args>(args)...) {
    store.allocate();
    layer.bind(store);
  }
  ddpm::nn::ParameterStore<float> store;
  Layer layer;
};

/// Conv2d of kernel 3 at batch 64, from the args (in channels, out channels, input side, stride).
struct ConvCase {
  explicit ConvCase(const benchmark::State& state)
      : conv(state.range(0), state.range(1), 3, state.range(3)),
        in{kUNetBatch, state.range(2), state.range(2), state.range(0)},
        out(conv.layer.output_shape(in)),
        x(normals(in.pixels(), in.channels, 1)),
        dy(normals(out.pixels(), out.channels, 2)),
        y(out.pixels(), out.channels),
        dx(in.pixels(), in.channels) {
    conv.layer.initialize(ddpm::CounterRng(1), 0);
  }
  /// 2 FLOP per multiply-add, out pixels x out channels x 9 x in channels multiply-adds.
  [[nodiscard]] double forward_flop() const {
    return 2.0 * static_cast<double>(out.pixels() * out.channels * 9 * in.channels);
  }
  Bound<ddpm::nn::Conv2d<float>> conv;
  ddpm::nn::ImageShape in, out;
  Batch<float> x, dy, y, dx;
};

void BM_Conv2dForward(benchmark::State& state) {
  ConvCase c(state);
  // Untimed warm-up: the first call sizes the workspaces.
  c.conv.layer.forward(c.x, c.in, c.y);
  for (auto _ : state) {
    c.conv.layer.forward(c.x, c.in, c.y);
    benchmark::DoNotOptimize(c.y.data());
  }
  report_gflops(state, c.forward_flop());
}

// dW and dx: twice the forward's multiply-adds.
void BM_Conv2dBackward(benchmark::State& state) {
  ConvCase c(state);
  // Untimed warm-up: the first call sizes the workspaces.
  c.conv.layer.backward(c.x, c.in, c.dy, c.dx);
  for (auto _ : state) {
    c.conv.layer.backward(c.x, c.in, c.dy, c.dx);
    benchmark::DoNotOptimize(c.dx.data());
  }
  report_gflops(state, 2.0 * c.forward_flop());
}

// The UNetSmall shapes: 3x3 32->32 at 28x28, 64->64 at 14x14, and the stride-2 32->32 at 28.
void unet_conv_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cin", "cout", "side", "stride"});
  b->Args({32, 32, 28, 1})->Args({64, 64, 14, 1})->Args({32, 32, 28, 2});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_Conv2dForward)->Apply(unet_conv_shapes);
BENCHMARK(BM_Conv2dBackward)->Apply(unet_conv_shapes);

/// GroupNorm(8, 32) + SiLU on 64 x 28 x 28 x 32, as in every level-0 ResBlock.
struct NormCase {
  NormCase()
      : norm(8, 32, ddpm::nn::Activation::silu),
        x(normals(shape.pixels(), shape.channels, 1)),
        dy(normals(shape.pixels(), shape.channels, 2)),
        y(shape.pixels(), shape.channels),
        dx(shape.pixels(), shape.channels) {
    norm.layer.initialize();
  }
  const ddpm::nn::ImageShape shape{kUNetBatch, 28, 28, 32};
  Bound<ddpm::nn::GroupNorm<float>> norm;
  Batch<float> x, dy, y, dx;
};

// keep = 1: training (statistics and pre-activations kept for backward); 0: inference.
void BM_GroupNormSiluForward(benchmark::State& state) {
  NormCase c;
  const bool keep = state.range(0) != 0;
  // Untimed warm-up: the first call sizes the workspaces.
  c.norm.layer.forward(c.x, c.shape, c.y, keep);
  for (auto _ : state) {
    c.norm.layer.forward(c.x, c.shape, c.y, keep);
    benchmark::DoNotOptimize(c.y.data());
  }
  state.SetItemsProcessed(state.iterations() * c.x.size());
}
BENCHMARK(BM_GroupNormSiluForward)
    ->ArgName("keep")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_GroupNormSiluBackward(benchmark::State& state) {
  NormCase c;
  c.norm.layer.forward(c.x, c.shape, c.y);
  // Untimed warm-up: the first call sizes the workspaces.
  c.norm.layer.backward(c.x, c.shape, c.dy, c.dx);
  for (auto _ : state) {
    c.norm.layer.backward(c.x, c.shape, c.dy, c.dx);
    benchmark::DoNotOptimize(c.dx.data());
  }
  state.SetItemsProcessed(state.iterations() * c.x.size());
}
BENCHMARK(BM_GroupNormSiluBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

/// The middle attention of UNetSmall: single head, 64 channels, on 64 x 7 x 7 x 64.
struct AttentionCase {
  AttentionCase()
      : attention(64, 1, 8),
        x(normals(shape.pixels(), shape.channels, 1)),
        dy(normals(shape.pixels(), shape.channels, 2)),
        y(shape.pixels(), shape.channels),
        dx(shape.pixels(), shape.channels) {
    attention.layer.initialize(ddpm::CounterRng(1), 0);
  }
  /// Per image: qkv (HW x C x 3C), proj (HW x C x C), q k^T and A v (HW x HW x C each).
  [[nodiscard]] double forward_flop() const {
    const double hw = static_cast<double>(shape.plane());
    const double c = static_cast<double>(shape.channels);
    return 2.0 * static_cast<double>(shape.batch) * (hw * c * 4.0 * c + 2.0 * hw * hw * c);
  }
  const ddpm::nn::ImageShape shape{kUNetBatch, 7, 7, 64};
  Bound<ddpm::nn::SpatialAttention<float>> attention;
  Batch<float> x, dy, y, dx;
};

// keep = 1: training (attention matrices kept for backward); 0: inference.
void BM_AttentionForward(benchmark::State& state) {
  AttentionCase c;
  const bool keep = state.range(0) != 0;
  // Untimed warm-up: the first call sizes the workspaces.
  c.attention.layer.forward(c.x, c.shape, c.y, keep);
  for (auto _ : state) {
    c.attention.layer.forward(c.x, c.shape, c.y, keep);
    benchmark::DoNotOptimize(c.y.data());
  }
  report_gflops(state, c.forward_flop());
}
BENCHMARK(BM_AttentionForward)
    ->ArgName("keep")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Every product again for the weights and once more for the inputs: twice the forward's.
void BM_AttentionBackward(benchmark::State& state) {
  AttentionCase c;
  c.attention.layer.forward(c.x, c.shape, c.y);
  // Untimed warm-up: the first call sizes the workspaces.
  c.attention.layer.backward(c.x, c.shape, c.dy, c.dx);
  for (auto _ : state) {
    c.attention.layer.backward(c.x, c.shape, c.dy, c.dx);
    benchmark::DoNotOptimize(c.dx.data());
  }
  report_gflops(state, 2.0 * c.forward_flop());
}
BENCHMARK(BM_AttentionBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
