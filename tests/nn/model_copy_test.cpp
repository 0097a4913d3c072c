// SPDX-License-Identifier: MIT
// Tests that copies and moves of every bundled model (Mlp, UNet, Classifier) are whole models:
// taken after a forward pass, each copy-constructed, copy-assigned, move-constructed and
// move-assigned object continues bitwise like the original (backward of that pass, the next
// forward, dropout draws) and owns its parameters and gradients.
#include <doctest/doctest.h>

#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/classifier.hpp"
#include "ddpm/nn/embedding.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/unet.hpp"
#include "support.hpp"
#include "tiny_configs.hpp"

namespace model_copy_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::test::random_batch;

template <class Real>
std::vector<Real> to_vector(std::span<const Real> values) {
  return {values.begin(), values.end()};
}

template <class Real>
std::vector<Real> to_vector(const Batch<Real>& m) {
  return {m.data(), m.data() + m.size()};
}

/// Equal bit for bit (a stricter test than ==: it also tells -0 from +0).
template <class Real>
bool bitwise_equal(const std::vector<Real>& a, const std::vector<Real>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(Real)) == 0;
}

/// What a model does after the forward pass the copy was taken at: everything a test compares.
template <class Real>
struct Continuation {
  std::vector<std::vector<Real>> results;
};

/// A model family for run_copy_checks: builds the model, runs the first forward pass, and runs
/// the continuation (backward of that pass, another forward and backward) recording every output
/// and every gradient.
template <class Real>
struct DenoiserCase {
  Batch<Real> x;
  std::vector<int> t;
  std::vector<int> labels;
  Batch<Real> grad_out;

  template <class Model>
  void first_forward(Model& model) const {
    Batch<Real> out;
    model.predict(x, t, labels, out);
  }

  template <class Model>
  Continuation<Real> continue_run(Model& model) const {
    Continuation<Real> run;
    Batch<Real> grad_x, out;
    model.zero_grad();
    model.backward(grad_out, grad_x);  // the backward of the pass made before the copy
    run.results.push_back(to_vector<Real>(std::as_const(model).gradient_values()));
    run.results.push_back(to_vector(grad_x));
    model.predict(x, t, labels, out);  // the next pass (the next dropout draw)
    run.results.push_back(to_vector(out));
    model.zero_grad();
    model.backward(grad_out);
    run.results.push_back(to_vector<Real>(std::as_const(model).gradient_values()));
    return run;
  }

  template <class Model>
  std::vector<Real> output(Model& model) const {
    Batch<Real> out;
    const bool training = model.training();
    model.set_training(false);
    model.predict(x, t, labels, out);
    model.set_training(training);
    return to_vector(out);
  }
};

template <class Real>
struct ClassifierCase {
  Batch<Real> x;
  std::vector<int> t;
  std::vector<int> labels;

  template <class Model>
  void first_forward(Model& model) const {
    model.cross_entropy(x, t, labels);
  }

  template <class Model>
  Continuation<Real> continue_run(Model& model) const {
    Continuation<Real> run;
    Batch<Real> grad_x, logits, features;
    model.zero_grad();
    const double loss = model.cross_entropy(x, t, labels);  // with dropout: the next draw
    run.results.push_back({static_cast<Real>(loss)});
    run.results.push_back(to_vector<Real>(model.gradient_values()));
    model.zero_grad();
    model.log_prob_gradient(x, t, labels, grad_x);
    run.results.push_back(to_vector(grad_x));
    run.results.push_back(to_vector<Real>(model.gradient_values()));
    model.logits(x, t, logits);
    run.results.push_back(to_vector(logits));
    model.features(x, t, features);
    run.results.push_back(to_vector(features));
    return run;
  }

  template <class Model>
  std::vector<Real> output(Model& model) const {
    Batch<Real> logits;
    model.logits(x, t, logits);
    return to_vector(logits);
  }
};

template <class Real>
void check_same(const Continuation<Real>& expected, const Continuation<Real>& actual) {
  REQUIRE(actual.results.size() == expected.results.size());
  for (std::size_t i = 0; i < expected.results.size(); ++i) {
    CAPTURE(i);
    CHECK(bitwise_equal(actual.results[i], expected.results[i]));
  }
}

/// Takes the four kinds of copy of a model after its first forward pass and checks that each
/// (a, b) continues bitwise like the original and (c) owns its parameters and gradients.
/// `other` builds the object a copy or move is assigned to (another configuration).
template <class Real, class Model, class Config, class Case, class MakeOther>
void run_copy_checks(const Config& config, const Case& test, MakeOther&& other) {
  Model original(config);
  test.first_forward(original);

  Model copy_constructed(original);
  Model copy_assigned = other();
  copy_assigned = original;
  Model move_source(original);
  Model move_constructed(std::move(move_source));
  Model move_assign_source(original);
  Model move_assigned = other();
  move_assigned = std::move(move_assign_source);

  const Continuation<Real> expected = test.continue_run(original);
  const std::vector<Real> original_values = to_vector<Real>(original.parameter_values());
  const std::vector<Real> original_grads = to_vector<Real>(original.gradient_values());
  const std::vector<Real> original_output = test.output(original);

  const auto check_one = [&](Model& model) {
    CHECK(model.parameter_values().data() != original.parameter_values().data());
    CHECK(model.parameters()[0].value.data() == model.parameter_values().data());
    // (a), (b): the same outputs and gradients, bit for bit.
    check_same(expected, test.continue_run(model));
    // (c): the model's layers read its own buffer, and the original's buffer stays untouched.
    for (Real& value : model.parameter_values()) value *= Real(0.5);
    CHECK_FALSE(bitwise_equal(test.output(model), original_output));
    CHECK(bitwise_equal(to_vector<Real>(original.parameter_values()), original_values));
    CHECK(bitwise_equal(test.output(original), original_output));
    CHECK(bitwise_equal(to_vector<Real>(original.gradient_values()), original_grads));
  };
  const std::pair<const char*, Model*> copies[] = {{"copy-constructed", &copy_constructed},
                                                   {"copy-assigned", &copy_assigned},
                                                   {"move-constructed", &move_constructed},
                                                   {"move-assigned", &move_assigned}};
  for (const auto& copy : copies) {
    INFO("copy: ", copy.first);
    check_one(*copy.second);
  }
}

template <class Real>
DenoiserCase<Real> denoiser_case(Index input_dim, Index output_dim, int num_classes) {
  DenoiserCase<Real> test{
      random_batch<Real>(3, input_dim, 1), {0, 40, 999}, {}, random_batch<Real>(3, output_dim, 2)};
  if (num_classes > 0) test.labels = {1, ddpm::kNoLabel, 0};
  return test;
}

template <class Real>
void run_mlp_checks(const ddpm::nn::MlpConfig& config) {
  using Model = ddpm::nn::Mlp<Real>;
  const auto other = [] {
    ddpm::nn::MlpConfig c = ddpm::test::tiny_mlp_config(3, 2, false);
    c.width = 5;
    c.depth = 2;
    return Model(c);
  };
  run_copy_checks<Real, Model>(
      config, denoiser_case<Real>(config.input_dim, config.output_dim, config.num_classes), other);
}

template <class Real>
void run_unet_checks(const ddpm::nn::UNetConfig& config) {
  using Model = ddpm::nn::UNet<Real>;
  const auto other = [] {
    ddpm::nn::UNetConfig c = ddpm::test::tiny_unet_config();
    c.base_channels = 2;
    c.groups = 1;
    c.seed = 6;
    return Model(c);
  };
  const Index input_dim = config.image_channels * config.height * config.width;
  const Index output_dim = config.output_channels * config.height * config.width;
  run_copy_checks<Real, Model>(
      config, denoiser_case<Real>(input_dim, output_dim, config.num_classes), other);
}

template <class Real>
void run_classifier_checks(const ddpm::nn::ClassifierConfig& config) {
  using Model = ddpm::nn::Classifier<Real>;
  const auto other = [] {
    ddpm::nn::ClassifierConfig c = ddpm::test::tiny_classifier_config();
    c.feature_dim = 2;
    c.seed = 10;
    return Model(c);
  };
  const ClassifierCase<Real> test{random_batch<Real>(3, 16, 3), {0, 40, 999}, {2, 0, 1}};
  run_copy_checks<Real, Model>(config, test, other);
}

}  // namespace

// Loops rather than SUBCASEs: run_copy_checks checks all four kinds of copy in one pass.
TEST_CASE_TEMPLATE(
    "Mlp copies and moves continue bitwise like the original and own their "
    "parameters",
    Real, float, double) {
  for (const int num_classes : {0, 3}) {
    for (const bool residual : {false, true}) {
      CAPTURE(num_classes);
      CAPTURE(residual);
      ddpm::nn::MlpConfig config = ddpm::test::tiny_mlp_config(3, num_classes, residual);
      if (num_classes > 0 && residual) config.output_dim = 6;  // a learned-variance output
      run_mlp_checks<Real>(config);
    }
  }
}

TEST_CASE_TEMPLATE(
    "UNet copies and moves continue bitwise like the original and own their "
    "parameters",
    Real, float, double) {
  ddpm::nn::UNetConfig attention_labels_dropout = ddpm::test::tiny_unet_config();
  attention_labels_dropout.res_blocks = 2;
  attention_labels_dropout.attention_resolutions = {2};
  attention_labels_dropout.attention_heads = 2;
  attention_labels_dropout.num_classes = 3;
  attention_labels_dropout.dropout = 0.25;
  attention_labels_dropout.injection = ddpm::nn::EmbeddingInjection::scale_shift;
  for (const ddpm::nn::UNetConfig& config :
       {ddpm::test::tiny_unet_config(), attention_labels_dropout}) {
    CAPTURE(config.num_classes);
    run_unet_checks<Real>(config);
  }
}

TEST_CASE_TEMPLATE(
    "Classifier copies and moves continue bitwise like the original and own "
    "their parameters",
    Real, float, double) {
  for (const double dropout : {0.0, 0.3}) {
    CAPTURE(dropout);
    ddpm::nn::ClassifierConfig config = ddpm::test::tiny_classifier_config();
    config.dropout = dropout;
    run_classifier_checks<Real>(config);
  }
}

TEST_CASE("A model copy keeps the training flag and dropout position") {
  ddpm::nn::UNetConfig config = ddpm::test::tiny_unet_config();
  config.dropout = 0.5;
  ddpm::nn::UNet<float> model(config);
  model.set_dropout_source(ddpm::CounterRng(4), 2);
  model.set_training(false);
  ddpm::nn::UNet<float> copy = model;
  CHECK_FALSE(copy.training());
  const Batch<float> x = random_batch<float>(2, model.input_dim(), 5);
  const std::vector<int> t{3, 4};
  Batch<float> a, b;
  model.set_training(true);
  copy.set_training(true);
  model.predict(x, t, a);
  copy.predict(x, t, b);
  CHECK(bitwise_equal(to_vector(a), to_vector(b)));
}

}  // namespace model_copy_test
