// SPDX-License-Identifier: MIT
// Tests of the denoiser concepts' optional training switch: every library entry point that
// evaluates a model runs it in inference mode and restores its mode, also through the adaptors.
#include "ddpm/denoiser.hpp"

#include <doctest/doctest.h>

#include <span>
#include <vector>

#include "ddpm/diffusion.hpp"
#include "ddpm/guidance.hpp"
#include "ddpm/samplers/ancestral.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/schedule.hpp"
#include "support.hpp"

namespace denoiser_test {

namespace {

using ddpm::Batch;
using ddpm::Index;

// Records the mode of every predict() call; in training mode its output is different (as with
// dropout), so a call in the wrong mode also changes results.
struct ModeRecorder {
  bool training_ = true;
  int calls_in_training = 0, calls = 0;
  [[nodiscard]] bool training() const { return training_; }
  void set_training(bool on) { training_ = on; }
  void predict(const Batch<double>& x, std::span<const int>, Batch<double>& out) {
    ++calls;
    if (training_) ++calls_in_training;
    out = (training_ ? 0.9 : 0.5) * x;
  }
  void predict(const Batch<double>& x, std::span<const int> t, std::span<const int>,
               Batch<double>& out) {
    predict(x, t, out);
  }
};

struct ClassifierRecorder {
  bool training_ = true;
  int calls_in_training = 0;
  [[nodiscard]] bool training() const { return training_; }
  void set_training(bool on) { training_ = on; }
  void log_prob_gradient(const Batch<double>& x, std::span<const int>, std::span<const int>,
                         Batch<double>& grad) {
    if (training_) ++calls_in_training;
    grad = -x;
  }
};

}  // namespace

static_assert(ddpm::detail::HasTrainingSwitch<ModeRecorder>);
static_assert(ddpm::ConditionalDenoiser<ModeRecorder, double>);

TEST_CASE("Every entry point that evaluates a model runs it in inference mode, then restores it") {
  const ddpm::GaussianDiffusion<double> diffusion(ddpm::NoiseSchedule::linear(40));
  const ddpm::CounterRng rng(1);
  const Batch<double> x0 = ddpm::test::random_batch(3, 2, 5);
  for (const bool initially_training : {true, false}) {
    CAPTURE(initially_training);
    ModeRecorder model;
    model.set_training(initially_training);
    SUBCASE("ancestral sampling") {
      (void)ddpm::AncestralSampler<double>(diffusion).sample(model, 3, 2, rng);
    }
    SUBCASE("DDIM sampling") {
      (void)ddpm::DdimSampler<double>(diffusion).sample(model, 3, 2, rng);
    }
    SUBCASE("DDIM inversion") {
      Batch<double> x = x0;
      ddpm::DdimSampler<double>(diffusion).invert(model, x);
    }
    SUBCASE("the variational bound") { (void)diffusion.variational_bound(model, x0, rng); }
    SUBCASE("through WithLabels") {
      const std::vector<int> labels{0, 1, 2};
      ddpm::WithLabels<double, ModeRecorder> labeled(model, labels);
      (void)ddpm::AncestralSampler<double>(diffusion).sample(labeled, 3, 2, rng);
    }
    SUBCASE("through classifier-free guidance") {
      const std::vector<int> labels{0, 1, 2};
      ddpm::ClassifierFreeGuidance<double, ModeRecorder> guided(model, labels, 2.0);
      (void)ddpm::DdimSampler<double>(diffusion).sample(guided, 3, 2, rng);
    }
    SUBCASE("through classifier guidance, the classifier too") {
      const std::vector<int> labels{0, 1, 2};
      ClassifierRecorder classifier;
      classifier.set_training(initially_training);
      ddpm::ClassifierGuidance<double, ModeRecorder, ClassifierRecorder> guided(model, classifier,
                                                                                labels, 1.0);
      (void)ddpm::AncestralSampler<double>(diffusion).sample(guided, 3, 2, rng);
      CHECK(classifier.calls_in_training == 0);
      CHECK(classifier.training() == initially_training);
    }
    CHECK(model.calls > 0);
    CHECK(model.calls_in_training == 0);
    CHECK(model.training() == initially_training);
  }
}

TEST_CASE("The inference guard restores the mode when the evaluation throws") {
  const ddpm::GaussianDiffusion<double> diffusion(ddpm::NoiseSchedule::linear(40));
  ModeRecorder model;
  struct Throwing {
    ModeRecorder* inner;
    [[nodiscard]] bool training() const { return inner->training(); }
    void set_training(bool on) { inner->set_training(on); }
    void predict(const Batch<double>&, std::span<const int>, Batch<double>& out) {
      out.resize(1, 1);  // the wrong shape: the sampler's step throws
    }
  } bad{&model};
  CHECK_THROWS_AS(
      (void)ddpm::AncestralSampler<double>(diffusion).sample(bad, 3, 2, ddpm::CounterRng(1)),
      ddpm::InvalidArgument);
  CHECK(model.training());
}

}  // namespace denoiser_test
