// SPDX-License-Identifier: MIT
// Tests of nn::UNet and nn::ResBlock: the UNetSmall preset's parameter count, whole-model gradients
// (every parameter tensor and x_t) against finite differences on tiny configurations, inference
// mode, copies, thread-count independence and input validation.
#include "ddpm/nn/unet.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ddpm/core/error.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "support.hpp"
#include "tiny_configs.hpp"

namespace unet_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::UNet;
using ddpm::nn::UNetConfig;
using ddpm::test::random_batch;

// loss = sum(out .* weights) with a fixed dropout draw, so repeated evaluations see one function.
template <class Model>
double weighted_output(Model& model, const Batch<double>& x, std::span<const int> t,
                       std::span<const int> labels, const Batch<double>& weights) {
  Batch<double> out;
  model.set_dropout_source(ddpm::CounterRng(3), 7);
  model.predict(x, t, labels, out);
  return (out.array() * weights.array()).sum();
}

// Checks d loss / d (every parameter tensor, sampled) and d loss / d x_t against central
// differences. Tolerance: h = 1e-6 central differences in double are accurate to ~1e-8 relative
// on these smooth functions; GroupNorm of few elements makes curvature larger, so 1e-5.
void check_whole_model_gradients(const UNetConfig& config, Index batch) {
  UNet<double> model(config);
  const Batch<double> x = random_batch(batch, model.input_dim(), 11);
  std::vector<int> t(static_cast<std::size_t>(batch));
  std::vector<int> labels(static_cast<std::size_t>(batch), ddpm::kNoLabel);
  for (Index i = 0; i < batch; ++i) {
    t[static_cast<std::size_t>(i)] = static_cast<int>(37 * i + 3);
    if (config.num_classes > 0 && i % 2 == 0) {
      labels[static_cast<std::size_t>(i)] = static_cast<int>(i % config.num_classes);
    }
  }
  const Batch<double> weights = random_batch(batch, model.output_dim(), 12);

  model.zero_grad();
  model.set_dropout_source(ddpm::CounterRng(3), 7);
  Batch<double> out;
  model.predict(x, t, labels, out);
  Batch<double> grad_x;
  model.backward(weights, grad_x);

  // A handful of elements of every tensor (first, last and a few between) keeps this fast while
  // exercising every tensor of every layer.
  double worst = 0.0;
  std::string worst_name;
  for (ddpm::ParameterBlock<double>& block : model.parameters()) {
    const std::size_t n = block.value.size();
    std::vector<std::size_t> picks{0, n - 1, n / 2, n / 3, (2 * n) / 3};
    for (const std::size_t i : picks) {
      const double saved = block.value[i];
      block.value[i] = saved + 1e-6;
      const double plus = weighted_output(model, x, t, labels, weights);
      block.value[i] = saved - 1e-6;
      const double minus = weighted_output(model, x, t, labels, weights);
      block.value[i] = saved;
      const double numeric = (plus - minus) / 2e-6;
      const double analytic = block.grad[i];
      const double error =
          std::abs(analytic - numeric) / std::max({std::abs(analytic), std::abs(numeric), 1e-3});
      if (error > worst) {
        worst = error;
        worst_name = block.name + "[" + std::to_string(i) + "]";
      }
    }
  }
  CAPTURE(worst_name);
  CHECK(worst < 1e-5);

  Batch<double> x_copy = x;
  Batch<double> numeric_x(x.rows(), x.cols());
  ddpm::nn::numeric_gradient<double>(
      [&] { return weighted_output(model, x_copy, t, labels, weights); }, ddpm::test::flat(x_copy),
      ddpm::test::flat(numeric_x));
  CHECK(ddpm::nn::max_gradient_error<double>(ddpm::test::flat(grad_x),
                                             ddpm::test::flat(numeric_x)) < 1e-5);
}

}  // namespace

static_assert(ddpm::TrainableDenoiser<UNet<float>, float>);
static_assert(ddpm::ConditionalDenoiser<UNet<float>, float>);

TEST_CASE("UNetSmall preset: the reference's 793,697 parameters") {
  const UNet<float> model(ddpm::nn::unet_small_config());
  CHECK(model.parameter_count() == 793697);
  CHECK(model.input_dim() == 784);
  CHECK(model.output_dim() == 784);
}

TEST_CASE("UNet whole-model gradients match finite differences") {
  SUBCASE("two levels, one block, middle attention") {
    check_whole_model_gradients(ddpm::test::tiny_unet_config(), 2);
  }
  SUBCASE("two blocks per level, attention at 2x3 with two heads, labels") {
    UNetConfig config = ddpm::test::tiny_unet_config();
    config.res_blocks = 2;
    config.attention_resolutions = {2};
    config.attention_heads = 2;
    config.num_classes = 3;
    check_whole_model_gradients(config, 3);
  }
  SUBCASE("scale-shift norm, dropout, three levels") {
    UNetConfig config = ddpm::test::tiny_unet_config();
    config.channel_mult = {1, 1, 2};
    config.height = 4;
    config.width = 8;
    config.injection = ddpm::nn::EmbeddingInjection::scale_shift;
    config.dropout = 0.25;
    check_whole_model_gradients(config, 2);
  }
}

TEST_CASE("UNet inference mode gives the training-mode output, copies are independent") {
  UNetConfig config = ddpm::test::tiny_unet_config();
  config.num_classes = 2;
  UNet<float> model(config);
  const Batch<float> x = random_batch<float>(3, model.input_dim(), 2);
  const std::vector<int> t{0, 500, 999};
  const std::vector<int> labels{1, ddpm::kNoLabel, 0};
  Batch<float> train_out, eval_out;
  model.predict(x, t, labels, train_out);
  model.set_training(false);
  model.predict(x, t, labels, eval_out);
  CHECK((train_out - eval_out).cwiseAbs().maxCoeff() == 0.0f);
  CHECK_THROWS_WITH_AS(model.backward(eval_out),
                       doctest::Contains("ddpm: nn::UNet::backward needs a predict() in training"),
                       std::logic_error);

  UNet<float> copy = model;
  copy.parameter_values()[0] += 1.0f;
  Batch<float> after;
  model.predict(x, t, labels, after);
  CHECK((after - eval_out).cwiseAbs().maxCoeff() == 0.0f);
  Batch<float> copy_out;
  copy.predict(x, t, labels, copy_out);
  CHECK((copy_out - eval_out).cwiseAbs().maxCoeff() > 0.0f);
}

TEST_CASE("UNet rows are independent: one batch equals its rows one by one") {
  UNet<double> model(ddpm::test::tiny_unet_config());
  const Batch<double> x = random_batch(4, model.input_dim(), 3);
  const std::vector<int> t{1, 2, 300, 999};
  Batch<double> whole;
  model.predict(x, t, whole);
  for (Index i = 0; i < 4; ++i) {
    Batch<double> one;
    const Batch<double> row = x.row(i);
    model.predict(row, std::span<const int>(&t[static_cast<std::size_t>(i)], 1), one);
    CHECK((one.row(0) - whole.row(i)).cwiseAbs().maxCoeff() < 1e-12);
  }
}

#ifdef _OPENMP
TEST_CASE("UNet output and gradients do not depend on the thread count") {
  UNetConfig config = ddpm::test::tiny_unet_config();
  config.height = 8;
  config.width = 8;
  config.dropout = 0.1;
  const Batch<float> x = random_batch<float>(5, 2 * 64, 4);
  const Batch<float> g = random_batch<float>(5, 3 * 64, 5);
  const std::vector<int> t{0, 10, 100, 500, 999};
  std::vector<Batch<float>> outs, grads;
  const int threads = omp_get_max_threads();
  for (const int n : {1, 2}) {
    omp_set_num_threads(n);
    UNet<float> model(config);
    Batch<float> out;
    model.predict(x, t, out);
    model.zero_grad();
    model.backward(g);
    outs.push_back(out);
    grads.emplace_back(
        Eigen::Map<const Batch<float>>(model.gradient_values().data(), 1, model.parameter_count()));
  }
  omp_set_num_threads(threads);
  CHECK((outs[0] - outs[1]).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((grads[0] - grads[1]).cwiseAbs().maxCoeff() == 0.0f);
}
#endif

TEST_CASE("UNet rejects bad configurations and inputs, naming the parameter") {
  UNetConfig config = ddpm::test::tiny_unet_config();
  config.height = 5;
  DDPM_CHECK_INVALID("height", UNet<float>{config});
  config = ddpm::test::tiny_unet_config();
  config.groups = 3;
  DDPM_CHECK_INVALID("groups", UNet<float>{config});
  config = ddpm::test::tiny_unet_config();
  config.channel_mult = {};
  DDPM_CHECK_INVALID("channel_mult", UNet<float>{config});
  config = ddpm::test::tiny_unet_config();
  config.res_blocks = 0;
  DDPM_CHECK_INVALID("res_blocks", UNet<float>{config});

  UNet<float> model(ddpm::test::tiny_unet_config());
  Batch<float> out;
  const std::vector<int> t{1, 2};
  DDPM_CHECK_INVALID("x_t", model.predict(Batch<float>::Zero(2, 5), t, out));
  DDPM_CHECK_INVALID("t.size()", model.predict(Batch<float>::Zero(3, model.input_dim()), t, out));
  const std::vector<int> labels{0, 1};
  DDPM_CHECK_INVALID("label",
                     model.predict(Batch<float>::Zero(2, model.input_dim()), t, labels, out));
  model.predict(Batch<float>::Zero(2, model.input_dim()), t, out);
  DDPM_CHECK_INVALID("grad_out", model.backward(Batch<float>::Zero(2, 7)));
}

}  // namespace unet_test
