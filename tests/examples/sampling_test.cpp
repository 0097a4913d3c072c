// SPDX-License-Identifier: MIT
// The programs' --x-init path (examples/common_sampling.hpp): sampling from a given x_T equals
// ddpm::sample_labeled bitwise when that x_T is the prior's own draw, for every sampler and kind of
// guidance; the file is checked against the data's shape.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../../examples/common_sampling.hpp"
#include "ddpm/core/enum_names.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/io/npy.hpp"
#include "ddpm/mixture_denoiser.hpp"
#include "support.hpp"

namespace sampling_test {

namespace {

using ddpm::Batch;

// A classifier whose log-probability gradient is a fixed function of x_t and the label, so that
// classifier guidance changes every step (and a wrong x_T or label would show).
struct TiltClassifier {
  void log_prob_gradient(const Batch<double>& x_t, std::span<const int>,
                         std::span<const int> labels, Batch<double>& grad) const {
    grad.resize(x_t.rows(), x_t.cols());
    for (ddpm::Index i = 0; i < x_t.rows(); ++i) {
      const double k = labels[static_cast<std::size_t>(i)];
      grad(i, 0) = 0.3 * (k - 1.0) - 0.1 * x_t(i, 0);
      grad(i, 1) = 0.2 * k * x_t(i, 1);
    }
  }
};

}  // namespace

TEST_CASE(
    "sample_labeled_from: every sampler and guidance, chunked, equals the adaptor denoised whole") {
  const ddpm::GaussianDiffusion<double> diffusion(ddpm::NoiseSchedule::linear(100),
                                                  {.output = ddpm::ModelOutput::epsilon});
  ddpm::GaussianMixtureDenoiser<double> exact(ddpm::test::three_components(), diffusion.schedule(),
                                              ddpm::ModelOutput::epsilon);
  TiltClassifier classifier;
  const std::vector<int> labels = ddpm::sample_labels(7, ddpm::kClassesInTurn, 3);
  const ddpm::CounterRng rng(11);
  // Rows i of a whole-batch prior draw are the chunks' rows (global sample i).
  const Batch<double> x_T = ddpm::detail::prior_sample<double>(7, 2, rng, 0);
  for (const std::string& name : ddpm::enum_names<ddpm::SamplerKind>()) {
    const ddpm::SamplerKind kind = ddpm::parse_enum<ddpm::SamplerKind>(name);
    // eta 0.5: DDIM, euler-a and dpm++2m-sde draw noise too (addressed by global sample).
    const ddpm::SamplerSpec spec{.kind = kind, .steps = 6, .eta = 0.5};
    for (const int guide : {0, 1, 2}) {
      CAPTURE(name);
      CAPTURE(guide);
      const ddpm::LabeledSampling options{.sampler = spec,
                                          .guidance = guide == 1 ? 1.5 : 0.0,
                                          .classifier_scale = guide == 2 ? 1.0 : 0.0,
                                          .chunk = 3};
      TiltClassifier* c = guide == 2 ? &classifier : nullptr;
      // The adaptor over the whole batch, denoised from x_T in one call.
      Batch<double> expected = x_T;
      const auto whole = [&](auto& denoiser) {
        ddpm::denoise(spec, diffusion, denoiser, expected, rng);
      };
      if (guide == 2) {
        ddpm::ClassifierGuidance<double, decltype(exact), TiltClassifier> guided(
            exact, classifier, labels, options.classifier_scale);
        whole(guided);
      } else if (guide == 1) {
        ddpm::ClassifierFreeGuidance<double, decltype(exact)> guided(exact, labels,
                                                                     options.guidance);
        whole(guided);
      } else {
        ddpm::WithLabels<double, decltype(exact)> labeled(exact, labels);
        whole(labeled);
      }
      CHECK(ddpm::sample_labeled<double>(options, diffusion, exact, c, labels, 2, rng) == expected);
      const Batch<double> got =
          ddpm::sample_labeled_from<double>(options, diffusion, exact, c, labels, x_T, rng);
      REQUIRE(expected.allFinite());
      CHECK(got == expected);
      const Batch<double> through = ddpm_examples::sample_labeled_or_from<double>(
          options, diffusion, exact, c, labels, 2, &x_T, rng);
      CHECK(through == expected);
    }
  }
  SUBCASE("another x_T gives other samples; one per label is required") {
    const ddpm::LabeledSampling options{.sampler = {.kind = ddpm::SamplerKind::ddim, .steps = 6}};
    const Batch<double> shifted = x_T.array() + 0.5;
    TiltClassifier* none = nullptr;
    CHECK(
        ddpm::sample_labeled_from<double>(options, diffusion, exact, none, labels, shifted, rng) !=
        ddpm::sample_labeled<double>(options, diffusion, exact, none, labels, 2, rng));
    CHECK_THROWS_WITH_AS(ddpm::sample_labeled_from<double>(options, diffusion, exact, none,
                                                           std::span(labels).first(6), x_T, rng),
                         doctest::Contains("x_init rows = 7; allowed: one row per label (6)"),
                         ddpm::InvalidArgument);
    CHECK_THROWS_WITH_AS(ddpm_examples::sample_labeled_or_from<double>(options, diffusion, exact,
                                                                       none, labels, 3, &x_T, rng),
                         doctest::Contains("x_init columns = 2; allowed: the data dimension 3"),
                         ddpm::InvalidArgument);
  }
}

TEST_CASE("--x-init: the file is N x dim or N x the sample shape, float32 or float64, finite") {
  const ddpm::test::TempDir dir;
  const std::vector<std::uint64_t> image{2, 2, 3};  // C x H x W
  const std::string expected = "N x 2 x 2 x 3 or N x 12";
  std::vector<double> values(4 * 12);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.25 * static_cast<double>(i) - 3.0;
  const std::string full = (dir.path / "full.npy").string();
  const std::string flat = (dir.path / "flat.npy").string();
  ddpm::io::write_npy(full, {4, 2, 2, 3}, values);
  const std::vector<float> as_float(values.begin(), values.end());
  ddpm::io::write_npy(flat, {4, 12}, as_float);
  for (const std::string& path : {full, flat}) {
    const Batch<float> x = ddpm_examples::read_x_init<float>(path, image, expected);
    REQUIRE(x.rows() == 4);
    REQUIRE(x.cols() == 12);
    // Row-major C order: sample i is values[12 i .. 12 i + 11] (planar, as the UNet's rows).
    CHECK(x(1, 0) == static_cast<float>(values[12]));
    CHECK(x(3, 11) == static_cast<float>(values[47]));
  }
  const auto refused = [&](const std::vector<std::uint64_t>& shape, const auto& data,
                           const std::string& why) {
    const std::string path = (dir.path / "bad.npy").string();
    ddpm::io::write_npy(path, shape, data);
    CAPTURE(why);
    CHECK_THROWS_WITH_AS(ddpm_examples::read_x_init<float>(path, image, expected),
                         doctest::Contains(("invalid --x-init = '" + path + "' (shape").c_str()),
                         ddpm::InvalidArgument);
  };
  refused({4, 2, 3, 2}, values, "another image shape");
  refused({2, 24}, std::vector<double>(values.begin(), values.end()), "another flat size");
  refused({48}, values, "one dimension");
  refused({0, 12}, std::vector<double>{}, "no sample");
  refused({4, 12}, std::vector<std::uint8_t>(48, 1), "uint8");
  std::vector<double> nan = values;
  nan[17] = std::numeric_limits<double>::quiet_NaN();
  refused({4, 12}, nan, "NaN");
  const std::string path = (dir.path / "bad.npy").string();
  ddpm::io::write_npy(path, {4, 2, 3, 2}, values);
  CHECK_THROWS_WITH_AS(ddpm_examples::read_x_init<float>(path, image, expected),
                       doctest::Contains("(shape (4, 2, 3, 2), dtype <f8); allowed: N x 2 x 2 x 3 "
                                         "or N x 12, float32 or float64"),
                       ddpm::InvalidArgument);

  // Without a --n option (or one not given) the file sets the number of samples.
  const ddpm_examples::XInit x_init{.path = full};
  CHECK(ddpm_examples::samples_of(x_init, 64, 4) == 4);
}

}  // namespace sampling_test
