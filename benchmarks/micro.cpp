// SPDX-License-Identifier: MIT
// Google Benchmark micro-benchmarks of the hot kernels: the ToyMLP train step and forward pass at
// the reference shapes, one sampler step over 10k points, q_sample, the loss and the RNG.
#include <benchmark/benchmark.h>

#include <vector>

#include "ddpm/ddpm.hpp"
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

}  // namespace

BENCHMARK_MAIN();
