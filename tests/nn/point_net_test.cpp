// SPDX-License-Identifier: MIT
// Tests of Luo & Hu's point-cloud networks: the PointwiseNet decoder, the PointNet encoder (max-
// pool included) and the composite PointCloudModel (KL term and reparameterization included)
// against finite differences; shape independence; bitwise equality for 1 and 2 threads; copies;
// the encode/set_codes paths; training through the Trainer; and every input check.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "ddpm/nn/model_core.hpp"
#include "ddpm/nn/point_cloud_model.hpp"
#include "ddpm/nn/point_decoder.hpp"
#include "ddpm/nn/point_encoder.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/train/trainer.hpp"
#include "support.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace point_net_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::PointCloudModel;
using ddpm::nn::PointCloudModelConfig;
using ddpm::test::flat;
using ddpm::test::random_batch;

// Central differences in double with h = 1e-5: the losses are sums of ~100-1000 terms of size
// ~1, so rounding contributes ~1e-16 * 100 / h = 1e-9 absolute and truncation ~h^2 = 1e-10,
// i.e. < 1e-6 relative at the 1e-3 floor of max_gradient_error (h = 1e-6 measured 3e-6 here:
// rounding dominates). No ReLU kink or max-pool tie lies within h of the random inputs.
constexpr double kStep = 1e-5;
constexpr double kGradTol = 1e-6;

static_assert(ddpm::TrainableDenoiser<PointCloudModel<float>, float>);
static_assert(ddpm::EncodingDenoiser<PointCloudModel<float>, float>);
static_assert(ddpm::detail::HasTrainingSwitch<PointCloudModel<float>>);

template <class Real>
std::vector<Real> to_vector(std::span<const Real> values) {
  return {values.begin(), values.end()};
}

template <class Real>
bool bitwise_equal(const Batch<Real>& a, const Batch<Real>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(Real) * static_cast<std::size_t>(a.size())) == 0;
}

template <class Real>
bool bitwise_equal(std::span<const Real> a, std::span<const Real> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(Real) * a.size()) == 0;
}

/// A small network: decoder 3 -> 6 -> 5 -> 3, encoder 3 -> 5 -> 7, head 7 -> 4 -> 2 * 3.
PointCloudModelConfig tiny_config(Index points_per_shape, bool residual = true) {
  PointCloudModelConfig config;
  config.latent_dim = 3;
  config.points_per_shape = points_per_shape;
  config.decoder_widths = {6, 5};
  config.encoder_widths = {5, 7};
  config.head_widths = {4};
  config.residual = residual;
  config.kl_weight = 0.3;
  config.seed = 9;
  return config;
}

/// Luo & Hu's schedule: betas linear from 1e-4 to 0.02 over `steps`.
std::vector<double> linear_betas(int steps) {
  std::vector<double> betas(static_cast<std::size_t>(steps));
  for (int i = 0; i < steps; ++i) {
    betas[static_cast<std::size_t>(i)] = 1e-4 + (0.02 - 1e-4) * i / std::max(1, steps - 1);
  }
  return betas;
}

/// One timestep per shape, repeated over its n rows.
std::vector<int> shape_timesteps(const std::vector<int>& per_shape, Index n) {
  std::vector<int> t;
  for (const int value : per_shape) t.insert(t.end(), static_cast<std::size_t>(n), value);
  return t;
}

struct DecoderOnly {
  ddpm::nn::PointDecoder<double> decoder;
  void bind(ddpm::nn::ParameterStore<double>& store) { decoder.bind(store); }
};

struct EncoderOnly {
  ddpm::nn::PointEncoder<double> encoder;
  void bind(ddpm::nn::ParameterStore<double>& store) { encoder.bind(store); }
};

}  // namespace

TEST_CASE("PointDecoder backward matches finite differences: parameters, x_t and z") {
  for (const bool residual : {true, false}) {
    CAPTURE(residual);
    ddpm::nn::BoundLayers<double, DecoderOnly> net([&](ddpm::nn::ParameterStore<double>& store) {
      return DecoderOnly{ddpm::nn::PointDecoder<double>(store, "decoder", 3, {6, 5}, 4, residual)};
    });
    net.layers().decoder.initialize(ddpm::CounterRng(4), 0);
    ddpm::nn::PointDecoder<double>& decoder = net.layers().decoder;
    const Index shapes = 3, n = 5;
    Batch<double> x = random_batch(shapes * n, 3, 1);
    Batch<double> z = random_batch(shapes, 4, 2);
    const std::vector<double> beta{0.02, 0.5, 0.001};
    const Batch<double> weights = random_batch(shapes * n, 3, 3);
    Batch<double> out;
    auto loss = [&] {
      decoder.forward(x, beta, z, n, out, false);
      return (out.array() * weights.array()).sum();
    };
    net.store().zero_grad();
    decoder.forward(x, beta, z, n, out);
    // The context is [beta, sin beta, cos beta, z].
    CHECK(decoder.context()(1, 0) == 0.5);
    CHECK(decoder.context()(1, 1) == std::sin(0.5));
    CHECK(decoder.context()(1, 2) == std::cos(0.5));
    CHECK(decoder.context()(2, 3 + 2) == z(2, 2));
    Batch<double> d_z(shapes, 4), grad_x;
    decoder.backward(weights, d_z, &grad_x);
    const std::vector<double> analytic = to_vector<double>(net.store().grads());

    std::vector<double> numeric(analytic.size());
    ddpm::nn::numeric_gradient(loss, net.store().values(), std::span<double>(numeric), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(analytic, numeric) < kGradTol);
    Batch<double> numeric_x(shapes * n, 3), numeric_z(shapes, 4);
    ddpm::nn::numeric_gradient(loss, flat(x), flat(numeric_x), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(flat(grad_x), flat(numeric_x)) < kGradTol);
    ddpm::nn::numeric_gradient(loss, flat(z), flat(numeric_z), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(flat(d_z), flat(numeric_z)) < kGradTol);

    // Inference (nothing kept) gives the training forward's output bitwise.
    Batch<double> kept, inferred;
    decoder.forward(x, beta, z, n, kept);
    decoder.forward(x, beta, z, n, inferred, false);
    CHECK(bitwise_equal(kept, inferred));
    CHECK_THROWS_AS(decoder.backward(weights, d_z), std::logic_error);
  }
}

TEST_CASE("PointEncoder: max-pool against brute force, ties to the lowest row, gradients") {
  ddpm::nn::BoundLayers<double, EncoderOnly> net([](ddpm::nn::ParameterStore<double>& store) {
    return EncoderOnly{ddpm::nn::PointEncoder<double>(store, "encoder", 3, {5, 7}, {4}, 3)};
  });
  net.layers().encoder.initialize(ddpm::CounterRng(6), 0);
  ddpm::nn::PointEncoder<double>& encoder = net.layers().encoder;
  const Index shapes = 2, n = 6;
  Batch<double> x = random_batch(shapes * n, 3, 5);
  // Shape 1's rows 2 and 4 are the same point: every channel ties between them.
  x.row(n + 4) = x.row(n + 2);
  Batch<double> mean, log_var;
  encoder.forward(x, n, mean, log_var);
  REQUIRE(mean.rows() == shapes);
  REQUIRE(mean.cols() == 3);
  REQUIRE(log_var.cols() == 3);

  SUBCASE("the pool is the maximum over each shape's points, by an independent computation") {
    // Per-point MLP by hand from the flat buffer: point0 (3x5, 5), point1 (5x7, 7).
    const std::span<const double> p = std::as_const(net.store()).values();
    for (Index s = 0; s < shapes; ++s) {
      for (Index j = 0; j < 7; ++j) {
        double best = -HUGE_VAL;
        Index best_row = -1;
        for (Index r = s * n; r < (s + 1) * n; ++r) {
          std::vector<double> h(5);
          for (Index o = 0; o < 5; ++o) {
            double v = p[static_cast<std::size_t>(15 + o)];
            for (Index i = 0; i < 3; ++i) v += x(r, i) * p[static_cast<std::size_t>(i * 5 + o)];
            h[static_cast<std::size_t>(o)] = std::max(v, 0.0);
          }
          double v = p[static_cast<std::size_t>(20 + 35 + j)];
          for (Index i = 0; i < 5; ++i) {
            v += h[static_cast<std::size_t>(i)] * p[static_cast<std::size_t>(20 + i * 7 + j)];
          }
          if (v > best) {
            best = v;
            best_row = r;
          }
        }
        CHECK(encoder.pooled()(s, j) == doctest::Approx(best).epsilon(1e-12));
        CHECK(encoder.argmax(s, j) == best_row);
        CHECK(encoder.argmax(s, j) != n + 4);  // the tie goes to row n + 2
      }
    }
  }

  SUBCASE("backward matches finite differences: parameters and x, through the max-pool") {
    // Break the tie first: a finite difference across a tie is not a derivative.
    x(n + 4, 0) += 0.25;
    const Batch<double> w_mean = random_batch(shapes, 3, 7);
    const Batch<double> w_log_var = random_batch(shapes, 3, 8);
    auto loss = [&] {
      encoder.forward(x, n, mean, log_var, false);
      return (mean.array() * w_mean.array()).sum() + (log_var.array() * w_log_var.array()).sum();
    };
    net.store().zero_grad();
    encoder.forward(x, n, mean, log_var);
    Batch<double> grad_x;
    encoder.backward(w_mean, w_log_var, &grad_x);
    const std::vector<double> analytic = to_vector<double>(net.store().grads());
    std::vector<double> numeric(analytic.size());
    ddpm::nn::numeric_gradient(loss, net.store().values(), std::span<double>(numeric), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(analytic, numeric) < kGradTol);
    Batch<double> numeric_x(shapes * n, 3);
    ddpm::nn::numeric_gradient(loss, flat(x), flat(numeric_x), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(flat(grad_x), flat(numeric_x)) < kGradTol);
  }

  SUBCASE("a tie sends the gradient to the lower row only") {
    net.store().zero_grad();
    Batch<double> grad_x;
    encoder.backward(Batch<double>::Ones(shapes, 3), Batch<double>::Ones(shapes, 3), &grad_x);
    CHECK(grad_x.row(n + 2).cwiseAbs().maxCoeff() > 0.0);
    CHECK(grad_x.row(n + 4).cwiseAbs().maxCoeff() == 0.0);
  }

  SUBCASE("an inference forward in between leaves the kept state intact") {
    Batch<double> other_mean, other_log_var;
    const Batch<double> other = random_batch(3 * n, 3, 9);
    net.store().zero_grad();
    encoder.forward(x, n, mean, log_var);
    encoder.backward(Batch<double>::Ones(shapes, 3), Batch<double>::Ones(shapes, 3));
    const std::vector<double> expected = to_vector<double>(net.store().grads());
    net.store().zero_grad();
    Batch<double> mean2, log_var2;
    encoder.forward(x, n, mean, log_var);
    encoder.forward(other, n, other_mean, other_log_var, false);
    encoder.forward(x, n, mean2, log_var2, false);
    CHECK(bitwise_equal(mean, mean2));  // inference gives the training forward's values
    CHECK(bitwise_equal(log_var, log_var2));
    encoder.backward(Batch<double>::Ones(shapes, 3), Batch<double>::Ones(shapes, 3));
    CHECK(bitwise_equal<double>(expected, std::as_const(net.store()).grads()));
  }
}

TEST_CASE("PointCloudModel: parameter blocks, names and initialization") {
  PointCloudModel<float> model(PointCloudModelConfig{}, linear_betas(100));
  const std::span<ddpm::ParameterBlock<float>> blocks = model.parameters();
  // Decoder: 6 layers x 5 tensors; encoder: 4 per-point + 3 head layers x 2 tensors.
  REQUIRE(blocks.size() == 6 * 5 + 7 * 2);
  CHECK(blocks[0].name == "decoder.layer0.weight");
  CHECK(blocks[2].name == "decoder.layer0.gate.weight");
  CHECK(blocks[4].name == "decoder.layer0.hyper_bias.weight");
  CHECK(blocks[29].name == "decoder.layer5.hyper_bias.weight");
  CHECK(blocks[30].name == "encoder.point0.weight");
  CHECK(blocks[43].name == "encoder.head2.bias");
  CHECK(blocks[43].value.size() == 2 * 128);
  // Luo & Hu's PointwiseNet with a 128 code (context 131), the encoder without batch norm.
  const Index context = 131;
  Index decoder = 0;
  const std::vector<Index> widths{3, 128, 256, 512, 256, 128, 3};
  for (std::size_t k = 0; k + 1 < widths.size(); ++k) {
    decoder +=
        widths[k] * widths[k + 1] + widths[k + 1] + 2 * context * widths[k + 1] + widths[k + 1];
  }
  const Index encoder = 3 * 128 + 128 + 128 * 128 + 128 + 128 * 256 + 256 + 256 * 512 + 512 +
                        512 * 256 + 256 + 256 * 128 + 128 + 128 * 256 + 256;
  CHECK(model.parameter_count() == decoder + encoder);
  const PointCloudModel<float> same(PointCloudModelConfig{}, linear_betas(100));
  CHECK(bitwise_equal<float>(std::as_const(model).parameter_values(), same.parameter_values()));
}

TEST_CASE(
    "PointCloudModel backward matches finite differences, KL term and reparameterization "
    "included") {
  for (const bool residual : {true, false}) {
    CAPTURE(residual);
    const Index n = 4, shapes = 3;
    PointCloudModel<double> model(tiny_config(n, residual), linear_betas(50));
    Batch<double> x0 = random_batch(shapes * n, 3, 21);
    Batch<double> x_t = random_batch(shapes * n, 3, 22);
    const std::vector<int> t = shape_timesteps({49, 0, 17}, n);
    const Batch<double> weights = random_batch(shapes * n, 3, 23);
    const ddpm::CounterRng rng(5);
    Batch<double> out;
    auto loss = [&] {
      model.encode_clean(x0, rng, 7);
      model.predict(x_t, t, out);
      return (out.array() * weights.array()).sum() + model.auxiliary_loss();
    };
    model.zero_grad();
    loss();
    Batch<double> grad_x;
    model.backward(weights, grad_x);
    const std::vector<double> analytic = to_vector<double>(std::as_const(model).gradient_values());
    std::vector<double> numeric(analytic.size());
    ddpm::nn::numeric_gradient(loss, model.parameter_values(), std::span<double>(numeric), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(analytic, numeric) < kGradTol);
    Batch<double> numeric_x(shapes * n, 3);
    ddpm::nn::numeric_gradient(loss, flat(x_t), flat(numeric_x), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(flat(grad_x), flat(numeric_x)) < kGradTol);
    // The encoder's blocks do get a gradient (through z and the KL term).
    double encoder_grad = 0;
    for (const ddpm::ParameterBlock<double>& block : model.parameters()) {
      if (block.name.starts_with("encoder.")) {
        for (const double g : block.grad) encoder_grad += std::abs(g);
      }
    }
    CHECK(encoder_grad > 0.0);
  }
}

TEST_CASE("PointCloudModel: z = mu + exp(log_var / 2) eps on stream::latent, KL in closed form") {
  const Index n = 4, shapes = 2;
  PointCloudModel<double> model(tiny_config(n), linear_betas(50));
  const Batch<double> x0 = random_batch(shapes * n, 3, 31);
  const ddpm::CounterRng rng(12);
  model.encode_clean(x0, rng, 5);
  Batch<double> mean, log_var;
  model.encode(x0, mean, log_var);
  double kl = 0;
  for (Index s = 0; s < shapes; ++s) {
    std::vector<double> eps(3);
    rng.normals(ddpm::stream::latent, static_cast<std::uint32_t>(s), 5, eps.data(), 3);
    for (Index j = 0; j < 3; ++j) {
      const double mu = mean(s, j), lv = log_var(s, j);
      CHECK(model.codes()(s, j) ==
            doctest::Approx(mu + std::exp(0.5 * lv) * eps[static_cast<std::size_t>(j)])
                .epsilon(1e-14));
      // KL(N(mu, e^lv) || N(0, 1)) = log(1 / sigma) + (sigma^2 + mu^2) / 2 - 1 / 2.
      kl += -0.5 * lv + 0.5 * (std::exp(lv) + mu * mu) - 0.5;
    }
  }
  CHECK(model.auxiliary_loss() == doctest::Approx(0.3 * kl / shapes).epsilon(1e-12));
  // Another step draws other noise; set_codes clears the term.
  const Batch<double> first = model.codes();
  model.encode_clean(x0, rng, 6);
  CHECK((model.codes() - first).cwiseAbs().maxCoeff() > 0.0);
  model.set_codes(first);
  CHECK(model.auxiliary_loss() == 0.0);
}

TEST_CASE("PointCloudModel: shapes are independent") {
  const Index n = 64, shapes = 3;
  PointCloudModel<float> model(tiny_config(n), linear_betas(100));
  Batch<float> x0 = random_batch<float>(shapes * n, 3, 41);
  Batch<float> x_t = random_batch<float>(shapes * n, 3, 42);
  const std::vector<int> t = shape_timesteps({3, 50, 99}, n);
  const ddpm::CounterRng rng(1);
  Batch<float> out_a, out_b;
  model.encode_clean(x0, rng, 0);
  const Batch<float> codes_a = model.codes();
  model.predict(x_t, t, out_a);
  // Change shape 1 entirely (its clean points and its noisy points).
  x0.middleRows(n, n) = random_batch<float>(n, 3, 43);
  x_t.middleRows(n, n) = random_batch<float>(n, 3, 44);
  model.encode_clean(x0, rng, 0);
  const Batch<float> codes_b = model.codes();
  model.predict(x_t, t, out_b);
  CHECK(bitwise_equal<float>(codes_a.row(0), codes_b.row(0)));
  CHECK(bitwise_equal<float>(codes_a.row(2), codes_b.row(2)));
  CHECK_FALSE(bitwise_equal<float>(codes_a.row(1), codes_b.row(1)));
  CHECK(bitwise_equal<float>(out_a.topRows(n), out_b.topRows(n)));
  CHECK(bitwise_equal<float>(out_a.bottomRows(n), out_b.bottomRows(n)));
  CHECK_FALSE(bitwise_equal<float>(out_a.middleRows(n, n), out_b.middleRows(n, n)));
}

#ifdef _OPENMP
TEST_CASE("PointCloudModel: a training step is bitwise equal on 1 and 2 threads") {
  // Large enough for every parallel path: row-split and depth-sliced products (3 x 1024 rows),
  // the per-group reductions, the max-pool.
  const Index n = 1024, shapes = 3;
  PointCloudModelConfig config = tiny_config(n);
  config.decoder_widths = {32, 64, 32};
  config.encoder_widths = {32, 64};
  config.head_widths = {32};
  config.latent_dim = 8;
  const Batch<float> x0 = random_batch<float>(shapes * n, 3, 51);
  const Batch<float> x_t = random_batch<float>(shapes * n, 3, 52);
  const Batch<float> grad_out = random_batch<float>(shapes * n, 3, 53);
  const std::vector<int> t = shape_timesteps({5, 60, 99}, n);
  struct Result {
    Batch<float> out, grad_x;
    std::vector<float> grads;
  };
  const auto run = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    PointCloudModel<float> model(config, linear_betas(100));
    Result r;
    model.encode_clean(x0, ddpm::CounterRng(2), 3);
    model.predict(x_t, t, r.out);
    model.backward(grad_out, r.grad_x);
    r.grads = to_vector<float>(std::as_const(model).gradient_values());
    omp_set_num_threads(before);
    return r;
  };
  const Result one = run(1);
  const Result two = run(2);
  CHECK(bitwise_equal(one.out, two.out));
  CHECK(bitwise_equal(one.grad_x, two.grad_x));
  CHECK(bitwise_equal<float>(one.grads, two.grads));
}
#endif

TEST_CASE("PointCloudModel copies are whole models") {
  const Index n = 8, shapes = 2;
  PointCloudModel<double> model(tiny_config(n), linear_betas(20));
  const Batch<double> x0 = random_batch(shapes * n, 3, 61);
  const Batch<double> x_t = random_batch(shapes * n, 3, 62);
  const Batch<double> grad_out = random_batch(shapes * n, 3, 63);
  const std::vector<int> t = shape_timesteps({1, 19}, n);
  Batch<double> out;
  model.encode_clean(x0, ddpm::CounterRng(1), 0);
  model.predict(x_t, t, out);
  PointCloudModel<double> copy = model;  // taken between predict and backward
  PointCloudModel<double> assigned(tiny_config(n, false), linear_betas(20));
  assigned = model;
  PointCloudModel<double> moved_from = model;
  PointCloudModel<double> moved = std::move(moved_from);
  model.zero_grad();
  model.backward(grad_out);
  const std::vector<double> expected = to_vector<double>(std::as_const(model).gradient_values());
  for (PointCloudModel<double>* other : {&copy, &assigned, &moved}) {
    other->zero_grad();
    other->backward(grad_out);
    CHECK(bitwise_equal<double>(expected, std::as_const(*other).gradient_values()));
    // Its own parameters: changing them leaves the original alone.
    other->parameter_values()[0] += 1.0;
    CHECK(std::as_const(model).parameter_values()[0] != other->parameter_values()[0]);
    Batch<double> out_other;
    other->set_codes(Batch<double>(model.codes()));
    other->predict(x_t, t, out_other);
    CHECK_FALSE(bitwise_equal(out, out_other));
  }
}

TEST_CASE("PointCloudModel: set_codes and encode for sampling and reconstruction") {
  const Index n = 8;
  PointCloudModel<double> model(tiny_config(n), linear_betas(20));
  const Batch<double> x0 = random_batch(2 * n, 3, 71);
  Batch<double> mean, log_var;
  model.encode(x0, mean, log_var);
  REQUIRE(mean.rows() == 2);
  // Reconstruction: the codes are the means; backward reaches the decoder only.
  model.set_codes(mean);
  Batch<double> out;
  const std::vector<int> t = shape_timesteps({4, 4}, n);
  model.predict(x0, t, out);
  model.zero_grad();
  model.backward(Batch<double>::Ones(2 * n, 3));
  double decoder_grad = 0, encoder_grad = 0;
  for (const ddpm::ParameterBlock<double>& block : model.parameters()) {
    double& sum = block.name.starts_with("encoder.") ? encoder_grad : decoder_grad;
    for (const double g : block.grad) sum += std::abs(g);
  }
  CHECK(decoder_grad > 0.0);
  CHECK(encoder_grad == 0.0);
  // Sampling new shapes: S may differ from the last call.
  model.set_training(false);
  model.set_codes(random_batch(5, 3, 72));
  Batch<double> x5 = random_batch(5 * n, 3, 73);
  model.predict(x5, shape_timesteps({0, 1, 2, 3, 19}, n), out);
  CHECK(out.rows() == 5 * n);
  CHECK_THROWS_AS(model.backward(out), std::logic_error);  // inference keeps nothing
}

TEST_CASE("PointCloudModel trains through the Trainer's encode_clean / auxiliary_loss hooks") {
  const Index n = 16, shapes = 4;
  PointCloudModel<float> model(tiny_config(n), linear_betas(100));
  ddpm::train::TrainerOptions options;
  options.batch_size = shapes * n;
  options.timestep_group = n;
  options.steps = 3;
  ddpm::train::Trainer<float, PointCloudModel<float>> trainer(
      model, ddpm::GaussianDiffusion<float>(ddpm::NoiseSchedule::linear(100)), options);
  const auto data = [&](std::int64_t step, Index rows, Batch<float>& out) {
    out = random_batch<float>(rows, 3, 100 + static_cast<std::uint64_t>(step));
  };
  for (int i = 0; i < 3; ++i) {
    const ddpm::train::StepStats stats = trainer.step(data);
    CHECK(std::isfinite(stats.loss));
    CHECK(stats.loss ==
          doctest::Approx(trainer.last_loss().mean + model.auxiliary_loss()).epsilon(1e-6));
    CHECK(model.auxiliary_loss() > 0.0);
  }
}

TEST_CASE("PointCloudModel rejects bad input with messages that name it") {
  const Index n = 4;
  PointCloudModel<double> model(tiny_config(n), linear_betas(10));
  const Batch<double> x = random_batch(2 * n, 3, 81);
  Batch<double> out;
  SUBCASE("predict before any codes") {
    DDPM_CHECK_INVALID("x_t.rows()", model.predict(x, shape_timesteps({1, 1}, n), out));
  }
  model.encode_clean(x, ddpm::CounterRng(1), 0);
  SUBCASE("t varying within a shape names the row") {
    std::vector<int> t = shape_timesteps({1, 2}, n);
    t[6] = 3;
    CHECK_THROWS_WITH_AS(model.predict(x, t, out),
                         doctest::Contains("invalid t[6] = 3; allowed: t[4] = 2"),
                         ddpm::InvalidArgument);
  }
  SUBCASE("row counts") {
    DDPM_CHECK_INVALID("x_t.rows()", model.predict(random_batch(2 * n + 1, 3, 1),
                                                   std::vector<int>(2 * n + 1, 0), out));
    CHECK_THROWS_WITH_AS(model.predict(random_batch(3 * n, 3, 1), std::vector<int>(3 * n, 0), out),
                         doctest::Contains("2 shapes (the codes"), ddpm::InvalidArgument);
    DDPM_CHECK_INVALID("x_t",
                       model.predict(random_batch(2 * n, 2, 1), shape_timesteps({1, 1}, n), out));
    DDPM_CHECK_INVALID("t.size()", model.predict(x, std::vector<int>(3, 0), out));
    DDPM_CHECK_INVALID("t", model.predict(x, shape_timesteps({1, 10}, n), out));
    DDPM_CHECK_INVALID("x0", model.encode_clean(random_batch(n + 1, 3, 1), ddpm::CounterRng(1), 0));
    Batch<double> mean, log_var;
    DDPM_CHECK_INVALID("x0", model.encode(random_batch(0, 3, 1), mean, log_var));
    DDPM_CHECK_INVALID("z", model.set_codes(random_batch(2, 4, 1)));
  }
  SUBCASE("backward without predict, twice, or with the wrong shape") {
    CHECK_THROWS_AS(model.backward(x), std::logic_error);
    model.predict(x, shape_timesteps({1, 1}, n), out);
    DDPM_CHECK_INVALID("grad_out", model.backward(random_batch(n, 3, 1)));
    model.backward(x);
    CHECK_THROWS_AS(model.backward(x), std::logic_error);
  }
  SUBCASE("configuration") {
    const auto make = [](auto change, std::vector<double> betas = linear_betas(10)) {
      PointCloudModelConfig c = tiny_config(4);
      change(c);
      return PointCloudModel<double>(c, std::move(betas));
    };
    DDPM_CHECK_INVALID("latent_dim", make([](auto& c) { c.latent_dim = 0; }));
    DDPM_CHECK_INVALID("points_per_shape", make([](auto& c) { c.points_per_shape = 0; }));
    DDPM_CHECK_INVALID("kl_weight", make([](auto& c) { c.kl_weight = -1; }));
    DDPM_CHECK_INVALID("decoder.widths", make([](auto& c) { c.decoder_widths = {}; }));
    DDPM_CHECK_INVALID("decoder.widths[1]", make([](auto& c) { c.decoder_widths = {4, 0}; }));
    DDPM_CHECK_INVALID("encoder.point_widths", make([](auto& c) { c.encoder_widths = {}; }));
    DDPM_CHECK_INVALID("encoder.head_widths[0]", make([](auto& c) { c.head_widths = {-2}; }));
    DDPM_CHECK_INVALID("betas.size()", make([](auto&) {}, {}));
    DDPM_CHECK_INVALID("betas[1]", make([](auto&) {}, {0.1, 1.0}));
  }
}

}  // namespace point_net_test
