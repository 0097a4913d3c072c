// SPDX-License-Identifier: MIT
// Tests of eval/feature_frechet.hpp: features in batches equal features at once, and the distance
// and its floor compare exactly the documented rows.
#include "ddpm/eval/feature_frechet.hpp"

#include <doctest/doctest.h>

#include <span>
#include <vector>

#include "support.hpp"

namespace feature_frechet_test {

namespace {

// A feature extractor that maps each row to (sum, first value, last value, t) and counts its
// calls, standing in for nn::Classifier::features.
struct SumFeatures {
  int calls = 0;
  ddpm::Index largest = 0;
  void features(const ddpm::Batch<double>& x, std::span<const int> t, ddpm::Batch<double>& out) {
    ++calls;
    largest = std::max(largest, x.rows());
    out.resize(x.rows(), 4);
    for (ddpm::Index i = 0; i < x.rows(); ++i) {
      out(i, 0) = x.row(i).sum();
      out(i, 1) = x(i, 0);
      out(i, 2) = x(i, x.cols() - 1);
      out(i, 3) = t[static_cast<std::size_t>(i)];
    }
  }
};

}  // namespace

TEST_CASE("clean_features computes batches of at most `batch` rows at t = 0") {
  const ddpm::Batch<double> images = ddpm::test::random_batch(23, 5, 1);
  SumFeatures whole, parts;
  const ddpm::Batch<double> all = ddpm::eval::clean_features(whole, images);
  const ddpm::Batch<double> batched = ddpm::eval::clean_features(parts, images, 4);
  CHECK(whole.calls == 1);
  CHECK(parts.calls == 6);
  CHECK(parts.largest == 4);
  CHECK(batched == all);
  CHECK(all.col(0) == images.rowwise().sum());
  CHECK((all.col(3).array() == 0.0).all());
  DDPM_CHECK_INVALID("batch", ddpm::eval::clean_features(parts, images, 0));
}

TEST_CASE(
    "feature_frechet compares the first n samples with reference rows 0..n-1, floor n..2n-1") {
  const ddpm::Batch<double> samples = ddpm::test::random_batch(30, 6, 2);
  const ddpm::Batch<double> reference = ddpm::test::random_batch(50, 6, 3);
  SumFeatures extractor;
  SUBCASE("n = min(samples, reference / 2)") {
    const ddpm::eval::FeatureFrechet fd =
        ddpm::eval::feature_frechet(extractor, samples, reference, 7);
    CHECK(fd.n == 25);
    SumFeatures plain;
    const ddpm::Batch<double> a =
        ddpm::eval::clean_features(plain, ddpm::Batch<double>(reference.topRows(25)));
    const ddpm::Batch<double> b =
        ddpm::eval::clean_features(plain, ddpm::Batch<double>(reference.middleRows(25, 25)));
    const ddpm::Batch<double> s =
        ddpm::eval::clean_features(plain, ddpm::Batch<double>(samples.topRows(25)));
    CHECK(fd.samples_vs_real == ddpm::eval::frechet_distance(s, a));
    CHECK(fd.real_vs_real_floor == ddpm::eval::frechet_distance(b, a));
    CHECK(fd.samples_vs_real != fd.real_vs_real_floor);
  }
  SUBCASE("fewer samples than half the reference: n = samples") {
    const ddpm::eval::FeatureFrechet fd =
        ddpm::eval::feature_frechet(extractor, ddpm::Batch<double>(samples.topRows(10)), reference);
    CHECK(fd.n == 10);
  }
  SUBCASE("samples equal to the first reference rows are at distance 0") {
    const ddpm::eval::FeatureFrechet fd = ddpm::eval::feature_frechet(
        extractor, ddpm::Batch<double>(reference.topRows(25)), reference);
    CHECK(fd.samples_vs_real == doctest::Approx(0.0).epsilon(1e-9));  // round-off of an SVD only
    CHECK(fd.real_vs_real_floor > 0.0);
  }
  SUBCASE("too few images are refused") {
    CHECK_THROWS_WITH_AS((void)ddpm::eval::feature_frechet(
                             extractor, samples, ddpm::Batch<double>(reference.topRows(3))),
                         doctest::Contains("at least 4 reference images and 2 samples"),
                         ddpm::InvalidArgument);
  }
}

TEST_CASE("to_json(FeatureFrechet) names the sampler and says it is not Inception FID") {
  const ddpm::eval::FeatureFrechet fd{.n = 12, .samples_vs_real = 7.5, .real_vs_real_floor = 1.25};
  CHECK(ddpm::eval::to_json(fd, "ddim").text(false) ==
        "{\"n\": 12, \"sampler\": \"ddim\", \"samples_vs_real\": 7.5, \"real_vs_real_floor\": "
        "1.25, \"note\": \"Frechet distance of this project's classifier's penultimate features, "
        "not Inception FID\"}");
}

}  // namespace feature_frechet_test
