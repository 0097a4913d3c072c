// SPDX-License-Identifier: MIT
// The Frechet distance of samples to real images in a classifier's feature space, beside the
// real-vs-real floor of the same size: the numbers ddpm-images eval reports (not Inception FID).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/eval/frechet.hpp"
#include "ddpm/io/json.hpp"

namespace ddpm::eval {

/// The features of every row of `images` at t = 0 (clean images), computed `batch` rows at a time
/// to bound memory: `extractor.features(rows, t, out)` as nn::Classifier provides it.
template <class Real, class Extractor>
Batch<Real> clean_features(Extractor& extractor, const Batch<Real>& images, Index batch = 500) {
  ddpm::detail::require(batch >= 1, "batch", batch, "a number of rows >= 1");
  Batch<Real> all, part;
  for (Index first = 0; first < images.rows(); first += batch) {
    const Index count = std::min(batch, images.rows() - first);
    const std::vector<int> zeros(static_cast<std::size_t>(count), 0);
    extractor.features(images.middleRows(first, count), std::span<const int>(zeros), part);
    if (first == 0) all.resize(images.rows(), part.cols());
    all.middleRows(first, count) = part;
  }
  return all;
}

/// A Frechet distance of samples to real data, with its floor.
struct FeatureFrechet {
  Index n = 0;                      ///< samples (and real images in each real set) compared
  double samples_vs_real = 0.0;     ///< samples against the first n real images
  double real_vs_real_floor = 0.0;  ///< real images n..2n-1 against the first n
};

/// The squared Frechet distance (frechet_distance) between the features of the first n samples
/// and of the first n reference images, and the same distance between reference images n..2n-1
/// and the first n: what two real sets of that size already differ by. n = min(samples,
/// reference / 2) rows; at least 2. Features are clean_features of `extractor`.
///
///   const FeatureFrechet fd = ddpm::eval::feature_frechet(classifier, samples, test_images);
template <class Real, class Extractor>
FeatureFrechet feature_frechet(Extractor& extractor, const Batch<Real>& samples,
                               const Batch<Real>& reference, Index batch = 500) {
  const Index n = std::min(samples.rows(), reference.rows() / 2);
  ddpm::detail::require(n >= 2, "reference", reference.rows(), [&] {
    return "at least 4 reference images and 2 samples (there are " +
           ddpm::detail::to_text(samples.rows()) + " samples)";
  });
  const Batch<Real> real_a = clean_features(extractor, Batch<Real>(reference.topRows(n)), batch);
  const Batch<Real> real_b =
      clean_features(extractor, Batch<Real>(reference.middleRows(n, n)), batch);
  const Batch<Real> fake = clean_features(extractor, Batch<Real>(samples.topRows(n)), batch);
  return {.n = n,
          .samples_vs_real = frechet_distance(fake, real_a),
          .real_vs_real_floor = frechet_distance(real_b, real_a)};
}

/// The distance as a metrics-file object: n, sampler (what drew the samples), samples_vs_real,
/// real_vs_real_floor and a note that these are not Inception FIDs.
[[nodiscard]] inline io::JsonObject to_json(const FeatureFrechet& fd, std::string_view sampler) {
  io::JsonObject json;
  json.add("n", fd.n)
      .add("sampler", sampler)
      .add("samples_vs_real", fd.samples_vs_real)
      .add("real_vs_real_floor", fd.real_vs_real_floor)
      .add("note",
           "Frechet distance of this project's classifier's penultimate features, not Inception "
           "FID");
  return json;
}

}  // namespace ddpm::eval
