// SPDX-License-Identifier: MIT
// How image layers see a batch: channels-last (N, H, W, C) stored as a row-major
// (N*H*W) x C matrix, so a 1x1 convolution is one GEMM and a channel concat is a column block.
#pragma once

#include <Eigen/Core>
#include <string>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::nn {

/// The shape of a channels-last image batch. Pixel (n, y, x) is row (n * height + y) * width + x
/// of a `pixels() x channels` row-major matrix; channel c is column c.
///
/// Models exchange images with the samplers as one row per image in planar C x H x W order (the
/// order of numpy's N x C x H x W arrays); see to_channels_last() / to_planar().
struct ImageShape {
  Index batch = 0;     ///< images
  Index height = 0;    ///< pixel rows per image
  Index width = 0;     ///< pixels per row
  Index channels = 0;  ///< channels per pixel

  /// Rows of the channels-last matrix: batch * height * width.
  [[nodiscard]] Index pixels() const noexcept { return batch * height * width; }
  /// Pixels of one image: height * width.
  [[nodiscard]] Index plane() const noexcept { return height * width; }
  /// Elements of one image: height * width * channels.
  [[nodiscard]] Index image_size() const noexcept { return height * width * channels; }
  /// The same shape with `c` channels.
  [[nodiscard]] ImageShape with_channels(Index c) const noexcept {
    return {batch, height, width, c};
  }
  /// Equal when all four sizes are.
  friend bool operator==(const ImageShape&, const ImageShape&) = default;
};

/// "NxHxWxC", for messages.
inline std::string to_string(const ImageShape& s) {
  return ddpm::detail::to_text(s.batch) + "x" + ddpm::detail::to_text(s.height) + "x" +
         ddpm::detail::to_text(s.width) + "x" + ddpm::detail::to_text(s.channels);
}

namespace detail {

/// Throws InvalidArgument unless `s` has non-negative sizes and `channels` channels and `x` (the
/// argument called `name`) is its channels-last matrix, s.pixels() x channels. The message is
/// built only on failure, so a passing check does not allocate.
template <class Real>
void require_image(const Eigen::Ref<const Batch<Real>>& x, const ImageShape& s, Index channels,
                   std::string_view name) {
  if (s.batch < 0 || s.height < 0 || s.width < 0 || s.channels != channels) [[unlikely]] {
    throw InvalidArgument("s", to_string(s),
                          "non-negative sizes with channels = " + ddpm::detail::to_text(channels) +
                              " (the layer's channels)");
  }
  ddpm::detail::require_shape(
      x.rows() == s.pixels() && x.cols() == channels, name, x.rows(), x.cols(), [&] {
        return "s.pixels() x channels = " + ddpm::detail::to_text(s.pixels()) + "x" +
               ddpm::detail::to_text(channels);
      });
}

}  // namespace detail

/// Planar rows (one image per row, C x H x W) to the channels-last matrix of `shape`.
template <class Real>
void to_channels_last(Eigen::Ref<const Batch<Real>> planar, const ImageShape& shape,
                      Eigen::Ref<Batch<Real>> out) {
  ddpm::detail::require_shape(planar.rows() == shape.batch && planar.cols() == shape.image_size(),
                              "images", planar.rows(), planar.cols(),
                              "one row of channels * height * width values per image");
  ddpm::detail::require_shape(out.rows() == shape.pixels() && out.cols() == shape.channels,
                              "channels-last output", out.rows(), out.cols(),
                              "batch * height * width rows x channels");
  const Index plane = shape.plane();
  const Index channels = shape.channels;
  ddpm::detail::parallel_for(shape.batch, plane * channels, [&](Index n) {
    const Real* src = planar.data() + n * planar.outerStride();
    for (Index p = 0; p < plane; ++p) {
      Real* dst = out.data() + (n * plane + p) * out.outerStride();
      for (Index c = 0; c < channels; ++c) dst[c] = src[c * plane + p];
    }
  });
}

/// The channels-last matrix of `shape` back to planar rows (one image per row, C x H x W).
template <class Real>
void to_planar(Eigen::Ref<const Batch<Real>> channels_last, const ImageShape& shape,
               Eigen::Ref<Batch<Real>> out) {
  ddpm::detail::require_shape(
      channels_last.rows() == shape.pixels() && channels_last.cols() == shape.channels,
      "channels-last images", channels_last.rows(), channels_last.cols(),
      "batch * height * width rows x channels");
  ddpm::detail::require_shape(out.rows() == shape.batch && out.cols() == shape.image_size(),
                              "planar output", out.rows(), out.cols(),
                              "one row of channels * height * width values per image");
  const Index plane = shape.plane();
  const Index channels = shape.channels;
  ddpm::detail::parallel_for(shape.batch, plane * channels, [&](Index n) {
    Real* dst = out.data() + n * out.outerStride();
    for (Index p = 0; p < plane; ++p) {
      const Real* src = channels_last.data() + (n * plane + p) * channels_last.outerStride();
      for (Index c = 0; c < channels; ++c) dst[c * plane + p] = src[c];
    }
  });
}

}  // namespace ddpm::nn
