// SPDX-License-Identifier: MIT
// Tests of samplers/sample.hpp: the sampler's name table, and ddpm::sample and
// ddpm::sample_labeled, which must give exactly what the sampler classes and guidance adaptors
// give.
#include "ddpm/samplers/sample.hpp"

#include <doctest/doctest.h>

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "ddpm/ddpm.hpp"
#include "support.hpp"

namespace sample_test {

TEST_CASE("SamplerKind names: every sampler, parsed back, and a bad name lists the choices") {
  CHECK(ddpm::to_string(ddpm::SamplerKind::ancestral) == "ddpm");
  CHECK(ddpm::to_string(ddpm::SamplerKind::ddim) == "ddim");
  CHECK(ddpm::enum_names<ddpm::SamplerKind>() ==
        std::vector<std::string>{"ddpm", "ddim", "euler", "euler-a", "heun", "dpm++2m", "dpm++3m",
                                 "dpm++2m-sde", "unipc"});
  for (const std::string& name : ddpm::enum_names<ddpm::SamplerKind>())
    CHECK(ddpm::to_string(ddpm::parse_enum<ddpm::SamplerKind>(name)) == name);
  CHECK_THROWS_WITH_AS((void)ddpm::parse_enum<ddpm::SamplerKind>("euler2"),
                       "ddpm: invalid sampler = euler2; allowed: ddpm, ddim, euler, euler-a, heun, "
                       "dpm++2m, dpm++3m, dpm++2m-sde or unipc",
                       ddpm::InvalidArgument);
  CHECK(ddpm::default_sample_steps(ddpm::SamplerKind::ancestral, 1000) == 1000);
  CHECK(ddpm::default_sample_steps(ddpm::SamplerKind::ddim, 1000) == 50);
  CHECK(ddpm::default_sample_steps(ddpm::SamplerKind::ddim, 20) == 20);
}

TEST_CASE_TEMPLATE("sample(kind, ...) equals the sampler class bitwise, progress included", Real,
                   float, double) {
  const ddpm::NoiseSchedule full = ddpm::NoiseSchedule::linear(100);
  const ddpm::NoiseSchedule respaced = full.respaced("evenly 10");
  ddpm::GaussianMixtureDenoiser<Real> model(ddpm::eight_gaussians_mixture(), full);
  const ddpm::GaussianDiffusion<Real> diffusion(respaced);
  const ddpm::CounterRng rng(7);
  std::vector<int> seen, seen_direct;
  const auto record = [](std::vector<int>& into) {
    return [&into](const ddpm::SamplerProgress<Real>& p) { into.push_back(p.t); };
  };
  SUBCASE("ancestral (eta is ignored)") {
    const ddpm::Batch<Real> direct =
        ddpm::AncestralSampler<Real>(diffusion).sample(model, 16, 2, rng, 5, record(seen_direct));
    const ddpm::Batch<Real> x = ddpm::sample(ddpm::SamplerKind::ancestral, diffusion, 0.7, model,
                                             16, 2, rng, 5, record(seen));
    CHECK(x == direct);
    CHECK(seen == seen_direct);
    CHECK(seen.size() == 10);
  }
  SUBCASE("DDIM with eta 0.5") {
    const ddpm::Batch<Real> direct =
        ddpm::DdimSampler<Real>(diffusion, 0.5).sample(model, 16, 2, rng, 5, record(seen_direct));
    const ddpm::Batch<Real> x =
        ddpm::sample(ddpm::SamplerKind::ddim, diffusion, 0.5, model, 16, 2, rng, 5, record(seen));
    CHECK(x == direct);
    CHECK(seen == seen_direct);
    // eta matters to DDIM: a different eta gives different samples.
    const ddpm::Batch<Real> other =
        ddpm::sample(ddpm::SamplerKind::ddim, diffusion, 0.0, model, 16, 2, rng, 5);
    CHECK(other != direct);
  }
  SUBCASE("the two kinds differ") {
    CHECK(ddpm::sample(ddpm::SamplerKind::ancestral, diffusion, 0.0, model, 16, 2, rng) !=
          ddpm::sample(ddpm::SamplerKind::ddim, diffusion, 0.0, model, 16, 2, rng));
  }
}

namespace {

// log p(y | x) of a toy classifier: its gradient pulls x toward (+1, +1) for class 0..3 and toward
// (-1, -1) otherwise (not normalized over y; enough to steer).
struct PullClassifier {
  void log_prob_gradient(const ddpm::Batch<double>& x, std::span<const int>, std::span<const int> y,
                         ddpm::Batch<double>& grad) {
    grad.resize(x.rows(), x.cols());
    for (ddpm::Index i = 0; i < x.rows(); ++i) {
      grad.row(i) = (y[static_cast<std::size_t>(i)] < 4 ? 1.0 : -1.0) - x.row(i).array();
    }
  }
};

}  // namespace

TEST_CASE("sample_labeled equals the guidance adaptors sampled whole, for any chunk size") {
  const ddpm::NoiseSchedule full = ddpm::NoiseSchedule::linear(100);
  const ddpm::GaussianDiffusion<double> diffusion(full);
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), full);
  const ddpm::CounterRng rng(11);
  std::vector<int> labels(10);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>(i % 8);
  PullClassifier* no_classifier = nullptr;
  PullClassifier classifier;
  for (const ddpm::SamplerKind kind :
       {ddpm::SamplerKind::ancestral, ddpm::SamplerKind::ddim, ddpm::SamplerKind::dpmpp_2m_sde}) {
    CAPTURE(ddpm::to_string(kind));
    const ddpm::SamplerSpec spec{.kind = kind, .steps = 8, .eta = 0.3};
    SUBCASE("labels only") {
      ddpm::WithLabels<double, decltype(model)> labeled(model, labels);
      const ddpm::Batch<double> whole = ddpm::sample(spec, diffusion, labeled, 10, 2, rng);
      std::vector<ddpm::Index> firsts;
      int steps = 0;
      const ddpm::Batch<double> chunked = ddpm::sample_labeled<double>(
          {.sampler = spec, .chunk = 4}, diffusion, model, no_classifier, labels, 2, rng,
          [&](ddpm::Index first, const ddpm::SamplerProgress<double>&) {
            if (firsts.empty() || firsts.back() != first) firsts.push_back(first);
            ++steps;
          });
      CHECK(chunked == whole);
      CHECK(firsts == std::vector<ddpm::Index>{0, 4, 8});
      CHECK(steps == 3 * 8);
    }
    SUBCASE("classifier-free guidance") {
      ddpm::ClassifierFreeGuidance<double, decltype(model)> guided(model, labels, 2.0);
      const ddpm::Batch<double> whole = ddpm::sample(spec, diffusion, guided, 10, 2, rng);
      const ddpm::Batch<double> chunked =
          ddpm::sample_labeled<double>({.sampler = spec, .guidance = 2.0, .chunk = 3}, diffusion,
                                       model, no_classifier, labels, 2, rng);
      CHECK(chunked == whole);
      ddpm::ClassifierFreeGuidance<double, decltype(model)> rescaled(model, labels, 2.0, 0.7);
      CHECK(ddpm::sample_labeled<double>(
                {.sampler = spec, .guidance = 2.0, .guidance_rescale = 0.7, .chunk = 3}, diffusion,
                model, no_classifier, labels, 2,
                rng) == ddpm::sample(spec, diffusion, rescaled, 10, 2, rng));
    }
    SUBCASE("classifier guidance (the classifier-free weight is then unused)") {
      ddpm::ClassifierGuidance<double, decltype(model), PullClassifier> guided(model, classifier,
                                                                               labels, 0.5);
      const ddpm::Batch<double> whole = ddpm::sample(spec, diffusion, guided, 10, 2, rng);
      const ddpm::Batch<double> chunked = ddpm::sample_labeled<double>(
          {.sampler = spec, .guidance = 2.0, .classifier_scale = 0.5, .chunk = 7}, diffusion, model,
          &classifier, labels, 2, rng);
      CHECK(chunked == whole);
    }
  }
  DDPM_CHECK_INVALID("chunk", ddpm::sample_labeled<double>({.chunk = 0}, diffusion, model,
                                                           no_classifier, labels, 2, rng));
}

TEST_CASE("sample_labels: one class, the classes in turn or none, checked against their use") {
  using V = std::vector<int>;
  const int none = ddpm::kNoLabel;
  SUBCASE("the labels") {
    CHECK(ddpm::sample_labels(5, ddpm::kClassesInTurn, 2) == V{0, 1, 0, 1, 0});
    CHECK(ddpm::sample_labels(3, ddpm::kClassesInTurn, 10) == V{0, 1, 2});
    CHECK(ddpm::sample_labels(3, 1, 2) == V{1, 1, 1});
    CHECK(ddpm::sample_labels(2, ddpm::kNoLabel, 2) == V{none, none});
    CHECK(ddpm::sample_labels(2, ddpm::kClassesInTurn, 0) == V{none, none});
    CHECK(ddpm::sample_labels(0, 1, 2).empty());
    CHECK(ddpm::sample_labels(2, 1, 2, 3.0, true) == V{1, 1});
    // Classifier guidance of an unconditional model: the class is the classifier's.
    CHECK(ddpm::sample_labels(3, 4, 0, 0.0, true) == V{4, 4, 4});
  }
  SUBCASE("a class or guidance needs a conditional model, and a class it knows") {
    DDPM_CHECK_INVALID("label", ddpm::sample_labels(2, 0, 0));
    DDPM_CHECK_INVALID("guidance", ddpm::sample_labels(2, ddpm::kClassesInTurn, 0, 2.0));
    DDPM_CHECK_INVALID("label", ddpm::sample_labels(2, 2, 2));
    DDPM_CHECK_INVALID("label", ddpm::sample_labels(2, ddpm::kClassesInTurn, 2, 0.0, true));
    DDPM_CHECK_INVALID("--label", ddpm::sample_labels(2, 7, 2, 0.0, false, "--"));
    CHECK_THROWS_WITH_AS(ddpm::sample_labels(2, 7, 2, 0.0, false, "--"),
                         "ddpm: invalid --label = 7; allowed: a class 0..1, -1 (none) or -2 (the "
                         "classes in turn)",
                         ddpm::InvalidArgument);
    CHECK_NOTHROW((void)ddpm::sample_labels(2, ddpm::kClassesInTurn, 2, -1.0));
    // An unconditional model with a classifier still needs a class to guide toward.
    DDPM_CHECK_INVALID("label", ddpm::sample_labels(2, ddpm::kClassesInTurn, 0, 0.0, true));
  }
}

TEST_CASE("sample(SamplerSpec) runs ddpm and ddim on the spec's grid of schedule steps") {
  const ddpm::NoiseSchedule full = ddpm::NoiseSchedule::linear(100);
  const ddpm::GaussianDiffusion<double> diffusion(full);
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), full);
  const ddpm::CounterRng rng(3);
  for (const ddpm::GridKind grid : {ddpm::GridKind::evenly, ddpm::GridKind::trailing,
                                    ddpm::GridKind::leading, ddpm::GridKind::linspace}) {
    const std::vector<int> kept = ddpm::NoiseGrid::table_timesteps(100, grid, 10);
    const ddpm::GaussianDiffusion<double> respaced(full.respaced(kept));
    const ddpm::SamplerSpec spec{.kind = ddpm::SamplerKind::ddim, .grid = grid, .steps = 10};
    CHECK(ddpm::sample(spec, diffusion, model, 6, 2, rng) ==
          ddpm::sample(ddpm::SamplerKind::ddim, respaced, 0.0, model, 6, 2, rng));
    CHECK(ddpm::sampling_timesteps(spec, full) == std::vector<int>(kept.rbegin(), kept.rend()));
  }
  CHECK(ddpm::SamplerSpec{.kind = ddpm::SamplerKind::heun, .steps = 10}.network_evaluations(100) ==
        19);
  CHECK(ddpm::SamplerSpec{.kind = ddpm::SamplerKind::ancestral}.network_evaluations(100) == 100);
  CHECK(ddpm::SamplerSpec{.kind = ddpm::SamplerKind::dpmpp_2m}.network_evaluations(100) == 20);
  DDPM_CHECK_INVALID("grid", ddpm::sample(ddpm::SamplerSpec{.kind = ddpm::SamplerKind::ancestral,
                                                            .grid = ddpm::GridKind::karras},
                                          diffusion, model, 2, 2, rng));
  DDPM_CHECK_INVALID(
      "diffusion",
      ddpm::sample(ddpm::SamplerSpec{}, ddpm::GaussianDiffusion<double>(full.respaced("evenly 10")),
                   model, 2, 2, rng));
  DDPM_CHECK_INVALID("sampler",
                     ddpm::sample(ddpm::SamplerKind::euler, diffusion, 0.0, model, 2, 2, rng));
}

}  // namespace sample_test
