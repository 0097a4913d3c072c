// SPDX-License-Identifier: MIT
// Tests of nn::Mlp: the ToyMLP preset's exact architecture and parameter count, reproducible
// initialization, whole-model gradients (parameters and x_t) against finite differences, inference
// mode, copies, and input validation.
#include "ddpm/nn/mlp.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "support.hpp"
#include "tiny_configs.hpp"

#if __has_include("ddpm/denoiser.hpp")
#include "ddpm/denoiser.hpp"
#endif

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::Mlp;
using ddpm::nn::MlpConfig;

using ddpm::test::flat;
using ddpm::test::random_batch;

// See linear_test.cpp: h = 1e-5 central differences in double are accurate to ~1e-7 relative.
constexpr double kGradTol = 1e-5;

}  // namespace

// The lead's concepts when they exist; otherwise the same requirements spelled out.
#if __has_include("ddpm/denoiser.hpp")
static_assert(ddpm::TrainableDenoiser<Mlp<float>, float>);
static_assert(ddpm::ConditionalDenoiser<Mlp<float>, float>);
#else
static_assert(requires(Mlp<float> & m, const Batch<float>& x, std::span<const int> t,
                       std::span<const int> labels, Batch<float>& out) {
  m.predict(x, t, out);
  m.predict(x, t, labels, out);
  m.backward(x);
  { m.parameters() } -> std::same_as<std::span<ddpm::ParameterBlock<float>>>;
  m.zero_grad();
});
#endif

namespace mlp_test {

TEST_CASE("ToyMLP preset: exact parameter count and block layout") {
  const Mlp<float> model(ddpm::nn::toy_mlp_config());
  CHECK(model.parameter_count() == 66 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 2 + 2);
  CHECK(model.parameter_count() == 149250);
  Mlp<float> m = model;
  const std::span<ddpm::ParameterBlock<float>> blocks = m.parameters();
  REQUIRE(blocks.size() == 8);
  const std::vector<std::string> names{"layer0.weight", "layer0.bias",   "layer1.weight",
                                       "layer1.bias",   "layer2.weight", "layer2.bias",
                                       "layer3.weight", "layer3.bias"};
  const std::vector<std::size_t> sizes{66 * 256, 256, 256 * 256, 256, 256 * 256, 256, 256 * 2, 2};
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    CHECK(blocks[i].name == names[i]);
    CHECK(blocks[i].value.size() == sizes[i]);
    CHECK(blocks[i].grad.size() == sizes[i]);
  }
  // One buffer: the blocks are back to back.
  CHECK(blocks.front().value.data() == m.parameter_values().data());
  CHECK(blocks.back().value.data() + 2 == m.parameter_values().data() + m.parameter_count());
}

TEST_CASE("ToyMLP forward equals an independent scalar implementation of the reference network") {
  Mlp<double> model(ddpm::nn::toy_mlp_config(5));
  const Batch<double> x = random_batch(4, 2, 6);
  const std::vector<int> t{0, 7, 500, 999};
  Batch<double> out;
  model.predict(x, t, out);
  REQUIRE(out.rows() == 4);
  REQUIRE(out.cols() == 2);

  // concat(x, emb64) -> Linear -> SiLU -> Linear -> SiLU -> Linear -> SiLU -> Linear, with
  // PyTorch's weight layout read from the flat buffer: layer k holds W (in x out), then b.
  const std::span<const double> p = std::as_const(model).parameter_values();
  std::size_t offset = 0;
  auto layer = [&](const std::vector<double>& in, std::size_t n_out, bool silu) {
    std::vector<double> y(n_out);
    const std::size_t n_in = in.size();
    for (std::size_t o = 0; o < n_out; ++o) {
      double z = p[offset + n_in * n_out + o];
      for (std::size_t i = 0; i < n_in; ++i) z += in[i] * p[offset + i * n_out + o];
      y[o] = silu ? z / (1.0 + std::exp(-z)) : z;
    }
    offset += n_in * n_out + n_out;
    return y;
  };
  for (Index r = 0; r < 4; ++r) {
    std::vector<double> h{x(r, 0), x(r, 1)};
    for (int i = 0; i < 32; ++i) {
      h.push_back(std::cos(t[static_cast<std::size_t>(r)] * std::exp(-std::log(10000.0) * i / 32)));
    }
    for (int i = 0; i < 32; ++i) {
      h.push_back(std::sin(t[static_cast<std::size_t>(r)] * std::exp(-std::log(10000.0) * i / 32)));
    }
    offset = 0;
    h = layer(h, 256, true);
    h = layer(h, 256, true);
    h = layer(h, 256, true);
    h = layer(h, 2, false);
    CHECK(offset == p.size());
    CHECK(out(r, 0) == doctest::Approx(h[0]).epsilon(1e-12));
    CHECK(out(r, 1) == doctest::Approx(h[1]).epsilon(1e-12));
  }
}

TEST_CASE("Mlp initialization is reproducible from the seed, the output layer can start at zero") {
  MlpConfig config = ddpm::test::tiny_mlp_config(2, 0, false);
  const Mlp<double> a(config);
  const Mlp<double> b(config);
  config.seed = 18;
  const Mlp<double> c(config);
  const std::span<const double> pa = a.parameter_values();
  const std::span<const double> pb = b.parameter_values();
  const std::span<const double> pc = c.parameter_values();
  CHECK(std::equal(pa.begin(), pa.end(), pb.begin()));
  CHECK_FALSE(std::equal(pa.begin(), pa.end(), pc.begin()));

  config.zero_init_output = true;
  Mlp<double> zero(config);
  const Batch<double> x = random_batch(5, 3, 1);
  const std::vector<int> t{1, 2, 3, 4, 5};
  Batch<double> out;
  zero.predict(x, t, out);
  CHECK(out.cwiseAbs().maxCoeff() == 0.0);
  // ... but it still learns: the output layer gets a gradient.
  zero.backward(Batch<double>::Ones(5, 2));
  const ddpm::ParameterBlock<double>& last = zero.parameters()[7];
  CHECK(last.name == "layer3.bias");
  CHECK(last.grad[0] == doctest::Approx(5.0));
}

TEST_CASE("Mlp backward matches central finite differences (parameters and x_t)") {
  for (const Index output_dim : {Index{2}, Index{4}}) {
    for (const int num_classes : {0, 3}) {
      for (const bool residual : {false, true}) {
        CAPTURE(output_dim);
        CAPTURE(num_classes);
        CAPTURE(residual);
        MlpConfig config = ddpm::test::tiny_mlp_config(output_dim, num_classes, residual);
        Mlp<double> model(config);
        Batch<double> x = random_batch(5, 3, 31);
        const std::vector<int> t{0, 3, 99, 999, 3};
        const std::vector<int> labels{2, ddpm::kNoLabel, 0, 2, 1};
        const std::span<const int> used_labels =
            num_classes > 0 ? std::span<const int>(labels) : std::span<const int>();
        const Batch<double> weights = random_batch(5, output_dim, 32);
        Batch<double> out;
        auto loss = [&] {
          model.predict(x, t, used_labels, out);
          return (out.array() * weights.array()).sum();
        };

        model.zero_grad();
        model.predict(x, t, used_labels, out);
        Batch<double> grad_x;
        model.backward(weights, grad_x);
        REQUIRE(grad_x.rows() == 5);
        REQUIRE(grad_x.cols() == 3);
        const std::vector<double> analytic(model.gradient_values().begin(),
                                           model.gradient_values().end());

        std::vector<double> numeric(analytic.size());
        ddpm::nn::numeric_gradient(loss, model.parameter_values(), std::span<double>(numeric),
                                   1e-5);
        CHECK(ddpm::nn::max_gradient_error<double>(analytic, numeric) < kGradTol);

        Batch<double> numeric_x(5, 3);
        ddpm::nn::numeric_gradient(loss, flat(x), flat(numeric_x), 1e-5);
        CHECK(ddpm::nn::max_gradient_error<double>(flat(grad_x), flat(numeric_x)) < kGradTol);

        // backward without grad_x gives the same parameter gradients.
        model.zero_grad();
        model.predict(x, t, used_labels, out);
        model.backward(weights);
        CHECK(ddpm::nn::max_gradient_error<double>(model.gradient_values(), analytic) < 1e-12);
      }
    }
  }
}

TEST_CASE("Mlp with GELU and ReLU also passes the gradient check") {
  for (const ddpm::nn::Activation act : {ddpm::nn::Activation::gelu, ddpm::nn::Activation::relu}) {
    CAPTURE(std::string(ddpm::to_string(act)));
    MlpConfig config = ddpm::test::tiny_mlp_config(2, 0, true);
    config.activation = act;
    config.depth = 2;
    Mlp<double> model(config);
    const Batch<double> x = random_batch(4, 3, 41);
    const std::vector<int> t{5, 6, 7, 8};
    const Batch<double> weights = random_batch(4, 2, 42);
    Batch<double> out;
    auto loss = [&] {
      model.predict(x, t, out);
      return (out.array() * weights.array()).sum();
    };
    model.predict(x, t, out);
    model.backward(weights);
    std::vector<double> numeric(static_cast<std::size_t>(model.parameter_count()));
    ddpm::nn::numeric_gradient(loss, model.parameter_values(), std::span<double>(numeric), 1e-5);
    CHECK(ddpm::nn::max_gradient_error<double>(model.gradient_values(), numeric) < kGradTol);
  }
}

TEST_CASE("Mlp: kNoLabel is the learned null embedding, and an empty label span means kNoLabel") {
  Mlp<double> model(ddpm::test::tiny_mlp_config(2, 3, false));
  const Batch<double> x = random_batch(2, 3, 3);
  const std::vector<int> t{4, 4};
  const std::vector<int> none{ddpm::kNoLabel, ddpm::kNoLabel};
  const std::vector<int> some{0, 1};
  Batch<double> a, b, c;
  model.predict(x, t, none, a);
  model.predict(x, t, b);
  model.predict(x, t, some, c);
  CHECK((a - b).cwiseAbs().maxCoeff() == 0.0);
  CHECK((a - c).cwiseAbs().maxCoeff() > 1e-6);
}

TEST_CASE_TEMPLATE("Mlp inference mode gives training mode's outputs and keeps nothing", Real,
                   float, double) {
  for (const bool residual : {false, true}) {
    MlpConfig config = ddpm::nn::toy_mlp_config(3);
    config.residual = residual;
    config.depth = 4;
    Mlp<Real> model(config);
    Batch<Real> x(300, 2);
    ddpm::CounterRng(2).fill_normal(x, ddpm::stream::user, 0, 0);
    std::vector<int> t(300);
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int>((i * 37) % 1000);
    Batch<Real> trained, inferred;
    model.predict(x, t, trained);
    model.set_training(false);
    model.predict(x, t, inferred);
    CHECK((trained - inferred).cwiseAbs().maxCoeff() == Real(0));
    CHECK_THROWS_WITH_AS(model.backward(trained),
                         "ddpm: nn::Mlp::backward needs a predict() in training mode "
                         "(set_training(true))",
                         std::logic_error);
    model.set_training(true);
    model.predict(x, t, trained);
    CHECK_NOTHROW(model.backward(trained));
  }
}

TEST_CASE("Mlp: rows are independent (a split batch gives the same outputs)") {
  Mlp<double> model(ddpm::test::tiny_mlp_config(4, 3, true));
  const Batch<double> x = random_batch(6, 3, 51);
  const std::vector<int> t{1, 2, 3, 4, 5, 6};
  const std::vector<int> labels{0, 1, 2, -1, 0, 1};
  Batch<double> whole, part;
  model.predict(x, t, labels, whole);
  model.predict(x.bottomRows(2), std::span<const int>(t).subspan(4),
                std::span<const int>(labels).subspan(4), part);
  CHECK((whole.bottomRows(2) - part).cwiseAbs().maxCoeff() < 1e-14);
}

TEST_CASE("Mlp copies own their parameters") {
  Mlp<double> original(ddpm::test::tiny_mlp_config(2, 0, false));
  Mlp<double> copy = original;
  const Batch<double> x = random_batch(3, 3, 61);
  const std::vector<int> t{1, 2, 3};
  Batch<double> a, b;
  original.predict(x, t, a);
  copy.predict(x, t, b);
  CHECK((a - b).cwiseAbs().maxCoeff() == 0.0);
  CHECK(copy.parameter_values().data() != original.parameter_values().data());
  CHECK(copy.parameters()[0].value.data() == copy.parameter_values().data());

  copy.parameter_values()[0] += 1.0;  // a layer0 weight: must move only the copy's outputs
  copy.predict(x, t, b);
  original.predict(x, t, a);
  CHECK((a - b).cwiseAbs().maxCoeff() > 1e-8);
  copy.zero_grad();
  original.zero_grad();
  copy.backward(Batch<double>::Ones(3, 2));
  CHECK(std::as_const(original).gradient_values()[0] == 0.0);
  CHECK(std::as_const(copy).gradient_values()[0] != 0.0);

  Mlp<double> moved = std::move(copy);
  moved.predict(x, t, a);
  CHECK((a - b).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("Mlp rejects bad configurations and inputs, naming the parameter") {
  MlpConfig bad = ddpm::test::tiny_mlp_config(2, 0, false);
  bad.depth = 0;
  CHECK_THROWS_WITH_AS(Mlp<double>{bad}, doctest::Contains("invalid depth = 0; allowed: >= 1"),
                       ddpm::InvalidArgument);
  bad = ddpm::test::tiny_mlp_config(2, 0, false);
  bad.num_classes = -2;
  CHECK_THROWS_WITH_AS(Mlp<double>{bad}, doctest::Contains("invalid num_classes = -2"),
                       ddpm::InvalidArgument);

  Mlp<double> model(ddpm::test::tiny_mlp_config(2, 3, false));
  Batch<double> out;
  const std::vector<int> t{1, 2};
  CHECK_THROWS_WITH_AS(model.predict(random_batch(2, 4, 1), t, out),
                       doctest::Contains("invalid x_t = 2x4 matrix"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(model.predict(random_batch(3, 3, 1), t, out),
                       doctest::Contains("invalid t.size() = 2"), ddpm::InvalidArgument);
  const std::vector<int> labels{0, 3};
  CHECK_THROWS_WITH_AS(model.predict(random_batch(2, 3, 1), t, labels, out),
                       doctest::Contains("invalid label = 3"), ddpm::InvalidArgument);
  const std::vector<int> negative_t{1, -1};
  CHECK_THROWS_WITH_AS(model.predict(random_batch(2, 3, 1), negative_t, out),
                       doctest::Contains("invalid t = -1"), ddpm::InvalidArgument);

  Mlp<double> unconditional(ddpm::test::tiny_mlp_config(2, 0, false));
  const std::vector<int> one_label{0, ddpm::kNoLabel};
  CHECK_THROWS_WITH_AS(unconditional.predict(random_batch(2, 3, 1), t, one_label, out),
                       doctest::Contains("invalid label = 0"), ddpm::InvalidArgument);

  model.predict(random_batch(2, 3, 1), t, out);
  CHECK_THROWS_WITH_AS(model.backward(Batch<double>::Ones(3, 2)),
                       doctest::Contains("invalid grad_out = 3x2 matrix"), ddpm::InvalidArgument);
}

}  // namespace mlp_test
