// SPDX-License-Identifier: MIT
// Steady-state training and sampling steps of the bundled MLP (with Adam, clipping and EMA) make no
// heap allocation through operator new once workspaces are sized.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/point_cloud_model.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/clip.hpp"
#include "ddpm/optim/ema.hpp"
#include "ddpm/samplers/ancestral.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/schedule.hpp"

// The replacements below pair operator new with malloc and operator delete with free; GCC cannot
// see that pairing through the replacement and warns at every `delete`.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
// Counting is switched on only around the code under test (doctest allocates for its own needs).
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

void* counted_alloc(std::size_t size, std::size_t alignment) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (size == 0) size = 1;
  void* p = alignment > alignof(std::max_align_t)
                ? std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment)
                : std::malloc(size);
  return p;
}
}  // namespace

void* operator new(std::size_t size) {
  void* p = counted_alloc(size, 0);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, std::align_val_t a) {
  void* p = counted_alloc(size, static_cast<std::size_t>(a));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t size, std::align_val_t a) { return operator new(size, a); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return counted_alloc(size, 0);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return counted_alloc(size, 0);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace allocation_test {

namespace {

struct TrainStep {
  ddpm::nn::Mlp<float> model;
  ddpm::optim::Adam<float> adam;
  ddpm::optim::Ema<float> ema;
  std::vector<int> t, labels;
  ddpm::Batch<float> x, out, grad;

  explicit TrainStep(const ddpm::nn::MlpConfig& config, ddpm::Index batch)
      : model(config),
        adam(),
        ema(model.parameter_values(), {.decay = 0.99}),
        t(static_cast<std::size_t>(batch)),
        labels(static_cast<std::size_t>(batch)),
        x(batch, config.input_dim),
        out(batch, config.output_dim),
        grad(batch, config.output_dim) {
    ddpm::CounterRng(1).fill_normal(x, ddpm::stream::user, 0, 0);
    for (std::size_t i = 0; i < t.size(); ++i) {
      t[i] = static_cast<int>((i * 131) % 1000);
      labels[i] = config.num_classes > 0 ? static_cast<int>(i % 3) - 1 : ddpm::kNoLabel;
    }
    grad.setConstant(0.01f);
  }

  void run(ddpm::Index rows) {
    model.zero_grad();
    model.predict(x.topRows(rows), std::span<const int>(t).first(static_cast<std::size_t>(rows)),
                  std::span<const int>(labels).first(static_cast<std::size_t>(rows)), out);
    model.backward(grad.topRows(rows));
    ddpm::optim::clip_grad_norm(model.gradient_values(), 1.0);
    adam.step(model.parameters());
    ema.update(model.parameter_values());
  }
};

}  // namespace

TEST_CASE("no operator new in steady-state training and sampling steps") {
  for (const int num_classes : {0, 3}) {
    CAPTURE(num_classes);
    ddpm::nn::MlpConfig config = ddpm::nn::toy_mlp_config(1);
    config.num_classes = num_classes;
    config.residual = num_classes > 0;
    TrainStep step(config, 256);
    // Warm-up: full batch, then the (smaller) last batch of an epoch; `out` is resized by
    // predict, so the measured loop uses the full batch only.
    step.run(256);
    step.run(100);
    step.run(256);

    g_allocations = 0;
    g_counting = true;
    step.run(256);
    step.run(256);
    g_counting = false;
    CHECK(g_allocations.load() == 0);

    // Sampling: inference mode, fixed batch.
    step.model.set_training(false);
    ddpm::Batch<float> eps(256, 2);
    step.model.predict(step.x, step.t, eps);
    g_allocations = 0;
    g_counting = true;
    for (int i = 0; i < 3; ++i) {
      auto averaged = step.ema.swapped_in(step.model.parameter_values());
      step.model.predict(step.x, step.t, eps);
    }
    g_counting = false;
    CHECK(g_allocations.load() == 0);
  }
}

TEST_CASE_TEMPLATE("no operator new in a steady-state sampler step", Sampler,
                   ddpm::AncestralSampler<float>, ddpm::DdimSampler<float>) {
  // 10k points as in the reference workloads, so the steps run their parallel loops.
  const ddpm::Index n = 10000;
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000).respaced("evenly 50");
  Sampler sampler{ddpm::GaussianDiffusion<float>(schedule)};
  const ddpm::CounterRng rng(3);
  ddpm::Batch<float> x(n, 2), eps(n, 2), next;
  rng.fill_normal(x, ddpm::stream::user, 0, 0);
  rng.fill_normal(eps, ddpm::stream::user + 1, 0, 0);
  const int t = schedule.timestep(25);
  sampler.step(eps, t, x, next, rng);  // warm-up: sizes the sampler's workspaces and `next`

  g_allocations = 0;
  g_counting = true;
  sampler.step(eps, t, x, next, rng);
  sampler.step(eps, schedule.timestep(24), next, x, rng);
  sampler.step(eps, schedule.timestep(0), x, next, rng);  // the last step (no noise)
  g_counting = false;
  CHECK(g_allocations.load() == 0);
}

TEST_CASE("no operator new in the steady-state sampling loop of the MLP") {
  // denoise() over a short respaced schedule: the model's predict and the sampler's step, after
  // one warm-up loop of the same size.
  ddpm::nn::Mlp<float> model(ddpm::nn::toy_mlp_config(1));
  model.set_training(false);
  ddpm::DdimSampler<float> sampler{
      ddpm::GaussianDiffusion<float>(ddpm::NoiseSchedule::linear(1000).respaced("evenly 5"))};
  const ddpm::CounterRng rng(3);
  ddpm::Batch<float> x(512, 2);
  rng.fill_normal(x, ddpm::stream::user, 0, 0);
  sampler.denoise(model, x, rng);

  g_allocations = 0;
  g_counting = true;
  sampler.denoise(model, x, rng);
  g_counting = false;
  CHECK(g_allocations.load() == 0);
}

TEST_CASE("no operator new in steady-state UNet training and inference steps") {
  // A small UNet with every kind of op (attention at 4x4, two heads, dropout, labels, scale-shift)
  // at batch 8, after one warm-up step.
  ddpm::nn::UNetConfig config;
  config.height = 8;
  config.width = 8;
  config.base_channels = 8;
  config.channel_mult = {1, 2};
  config.attention_resolutions = {4};
  config.attention_heads = 2;
  config.dropout = 0.1;
  config.num_classes = 3;
  config.injection = ddpm::nn::EmbeddingInjection::scale_shift;
  ddpm::nn::UNet<float> model(config);
  ddpm::optim::Adam<float> adam;
  const ddpm::Index batch = 8;
  ddpm::Batch<float> x(batch, model.input_dim()), out, grad(batch, model.output_dim()), grad_x;
  ddpm::CounterRng(1).fill_normal(x, ddpm::stream::user, 0, 0);
  grad.setConstant(0.01f);
  const std::vector<int> t{0, 1, 10, 100, 500, 900, 998, 999};
  const std::vector<int> labels{0, 1, 2, ddpm::kNoLabel, 0, 1, 2, ddpm::kNoLabel};
  const auto train_step = [&] {
    model.zero_grad();
    model.predict(x, t, labels, out);
    model.backward(grad, grad_x);
    adam.step(model.parameters());
  };
  train_step();
  g_allocations = 0;
  g_counting = true;
  train_step();
  train_step();
  g_counting = false;
  CHECK(g_allocations.load() == 0);

  model.set_training(false);
  model.predict(x, t, labels, out);
  g_allocations = 0;
  g_counting = true;
  model.predict(x, t, labels, out);
  g_counting = false;
  CHECK(g_allocations.load() == 0);
}

TEST_CASE("no operator new in steady-state PointCloudModel training and sampling steps") {
  // 4 shapes x 128 points on a small network. The two warm-up steps see shapes whose points all
  // coincide (every channel pools the same point), the measured steps random shapes: the
  // encoder's backward reruns its per-point layers on far more pooled points than before, in
  // buffers sized once for the most there can be.
  ddpm::nn::PointCloudModelConfig config;
  config.points_per_shape = 128;
  config.latent_dim = 16;
  config.decoder_widths = {32, 64, 32};
  config.encoder_widths = {32, 64};
  config.head_widths = {32};
  ddpm::nn::PointCloudModel<float> model(config, std::vector<double>(100, 0.01));
  ddpm::optim::Adam<float> adam;
  const ddpm::Index shapes = 4, rows = shapes * 128;
  std::vector<ddpm::Batch<float>> x0(4, ddpm::Batch<float>(rows, 3));
  for (std::size_t i = 0; i < x0.size(); ++i) {
    ddpm::CounterRng(1).fill_normal(x0[i], ddpm::stream::user, 0, static_cast<std::uint32_t>(i));
    if (i < 2) x0[i].setConstant(0.25f);
  }
  ddpm::Batch<float> x_t = x0[3], out, grad(rows, 3), z(shapes, 16), eps;
  grad.setConstant(0.01f);
  z.setConstant(0.5f);
  std::vector<int> t(static_cast<std::size_t>(rows));
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int>(i / 128) * 20;
  const ddpm::CounterRng rng(3);
  const auto train_step = [&](std::uint32_t step) {
    model.encode_clean(x0[step % x0.size()], rng, step);
    model.predict(x_t, t, out);
    model.zero_grad();
    model.backward(grad);
    adam.step(model.parameters());
  };
  train_step(0);
  train_step(1);
  g_allocations = 0;
  g_counting = true;
  train_step(2);
  train_step(3);
  g_counting = false;
  CHECK(g_allocations.load() == 0);

  model.set_training(false);
  model.set_codes(z);
  model.predict(x_t, t, eps);
  g_allocations = 0;
  g_counting = true;
  model.predict(x_t, t, eps);
  model.predict(x_t, t, eps);
  g_counting = false;
  CHECK(g_allocations.load() == 0);
}

TEST_CASE("the allocation counter itself works") {
  g_allocations = 0;
  g_counting = true;
  std::vector<int>* v = new std::vector<int>(10);
  g_counting = false;
  delete v;
  CHECK(g_allocations.load() == 2);  // the vector object and its buffer
}

}  // namespace allocation_test
