// SPDX-License-Identifier: MIT
// Tests of nn::Classifier: cross-entropy gradients (parameters) and log p(y | x_t) gradients
// (input) against finite differences, softmax/cross-entropy against a direct computation, and a
// few steps of training that separate two easy classes.
#include "ddpm/nn/classifier.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ddpm/nn/gradient_check.hpp"
#include "ddpm/optim/adam.hpp"
#include "support.hpp"
#include "tiny_configs.hpp"

namespace classifier_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::Classifier;
using ddpm::nn::ClassifierConfig;
using ddpm::test::random_batch;

}  // namespace

TEST_CASE("Classifier cross-entropy matches log-softmax of its logits") {
  Classifier<double> classifier(ddpm::test::tiny_classifier_config());
  const Batch<double> x = random_batch(3, 16, 1);
  const std::vector<int> t{0, 10, 500};
  const std::vector<int> labels{2, 0, 1};
  Batch<double> logits;
  classifier.logits(x, t, logits);
  double expected = 0.0;
  for (Index i = 0; i < 3; ++i) {
    const double log_z = std::log(logits.row(i).array().exp().sum());
    expected -= logits(i, labels[static_cast<std::size_t>(i)]) - log_z;
  }
  classifier.set_training(false);
  CHECK(classifier.cross_entropy(x, t, labels) == doctest::Approx(expected / 3).epsilon(1e-12));
}

TEST_CASE("Classifier gradients match finite differences") {
  // Central differences with h = 1e-6 in double: ~1e-8 relative error on these smooth losses.
  Classifier<double> classifier(ddpm::test::tiny_classifier_config());
  const Batch<double> x = random_batch(3, 16, 2);
  const std::vector<int> t{0, 10, 500};
  const std::vector<int> labels{2, 0, 1};
  const auto loss = [&] {
    classifier.set_training(false);
    const double value = classifier.cross_entropy(x, t, labels);
    classifier.set_training(true);
    return value;
  };
  classifier.zero_grad();
  classifier.cross_entropy(x, t, labels);
  std::vector<double> analytic(classifier.gradient_values().begin(),
                               classifier.gradient_values().end());
  std::vector<double> numeric(analytic.size());
  ddpm::nn::numeric_gradient<double>(loss, classifier.parameter_values(),
                                     std::span<double>(numeric));
  CHECK(ddpm::nn::max_gradient_error<double>(analytic, numeric) < 1e-5);

  // d log p(y | x) / d x: the negative of the per-row cross-entropy gradient times the batch.
  Batch<double> grad;
  classifier.log_prob_gradient(x, t, labels, grad);
  Batch<double> x_copy = x;
  Batch<double> numeric_x(x.rows(), x.cols());
  ddpm::nn::numeric_gradient<double>(
      [&] {
        classifier.set_training(false);
        const double value = -3.0 * classifier.cross_entropy(x_copy, t, labels);
        classifier.set_training(true);
        return value;
      },
      ddpm::test::flat(x_copy), ddpm::test::flat(numeric_x));
  CHECK(ddpm::nn::max_gradient_error<double>(ddpm::test::flat(grad), ddpm::test::flat(numeric_x)) <
        1e-5);
}

TEST_CASE("Classifier learns two separable classes in a few Adam steps") {
  ClassifierConfig config = ddpm::test::tiny_classifier_config();
  config.num_classes = 2;
  Classifier<float> classifier(config);
  // Class 0: dark images, class 1: bright images, with noise.
  Batch<float> x = random_batch<float>(16, 16, 3) * 0.3f;
  std::vector<int> labels(16);
  for (Index i = 0; i < 16; ++i) {
    labels[static_cast<std::size_t>(i)] = static_cast<int>(i % 2);
    x.row(i).array() += i % 2 == 0 ? -0.8f : 0.8f;
  }
  const std::vector<int> t(16, 0);
  ddpm::optim::Adam<float> adam({.learning_rate = 1e-2});
  double first = 0.0, last = 0.0;
  for (int step = 0; step < 40; ++step) {
    classifier.zero_grad();
    last = classifier.cross_entropy(x, t, labels);
    if (step == 0) first = last;
    adam.step(classifier.parameters());
  }
  CHECK(last < 0.25 * first);
  classifier.set_training(false);
  Index correct = 0;
  classifier.cross_entropy(x, t, labels, &correct);
  CHECK(correct == 16);
}

TEST_CASE("Classifier rejects bad labels and shapes") {
  Classifier<float> classifier(ddpm::test::tiny_classifier_config());
  const Batch<float> x = Batch<float>::Zero(2, 16);
  const std::vector<int> t{0, 1};
  const std::vector<int> bad{0, 3};
  DDPM_CHECK_INVALID("label", classifier.cross_entropy(x, t, bad));
  const std::vector<int> short_labels{0};
  DDPM_CHECK_INVALID("labels.size()", classifier.cross_entropy(x, t, short_labels));
  Batch<float> out;
  DDPM_CHECK_INVALID("x_t", classifier.logits(Batch<float>::Zero(2, 15), t, out));
  ClassifierConfig config = ddpm::test::tiny_classifier_config();
  config.num_classes = 1;
  DDPM_CHECK_INVALID("num_classes", Classifier<float>{config});
}

}  // namespace classifier_test
