// SPDX-License-Identifier: MIT
// Nearest-neighbour 2x upsampling of channels-last image batches (a UNet's decoder path) and its
// adjoint, the sum of each 2x2 block of output gradients.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/image.hpp"

namespace ddpm::nn {

namespace detail {

/// Throws InvalidArgument unless no size of `in` is negative, `small` is in.pixels() x
/// in.channels and `large` is (4 * in.pixels()) x in.channels.
template <class Real>
void check_upsample(const ImageShape& in, const Eigen::Ref<const Batch<Real>>& small,
                    std::string_view small_name, Index large_rows, Index large_cols,
                    std::string_view large_name) {
  ddpm::detail::require(in.batch >= 0, "in.batch", in.batch, ">= 0");
  ddpm::detail::require(in.height >= 0, "in.height", in.height, ">= 0");
  ddpm::detail::require(in.width >= 0, "in.width", in.width, ">= 0");
  ddpm::detail::require(in.channels >= 0, "in.channels", in.channels, ">= 0");
  ddpm::detail::require_shape(small.rows() == in.pixels() && small.cols() == in.channels,
                              small_name, small.rows(), small.cols(), "in.pixels() x in.channels");
  ddpm::detail::require_shape(large_rows == 4 * in.pixels() && large_cols == in.channels,
                              large_name, large_rows, large_cols,
                              "(batch * 2H * 2W) x in.channels, the upsampled shape");
}

}  // namespace detail

/// y = x upsampled 2x by nearest neighbour: y[n, Y, X, c] = x[n, Y / 2, X / 2, c], so y has
/// shape {N, 2H, 2W, C} (rows 4 * in.pixels()). x: in.pixels() x C; y must not alias x. Either
/// may be a column block of a wider matrix.
/// \code
///   Batch<float> y(4 * in.pixels(), in.channels);
///   nn::upsample_nearest2x<float>(x, in, y);
/// \endcode
template <class Real>
void upsample_nearest2x(Eigen::Ref<const Batch<Real>> x, const ImageShape& in,
                        Eigen::Ref<Batch<Real>> y) {
  detail::check_upsample<Real>(in, x, "x", y.rows(), y.cols(), "y");
  const Index c = in.channels;
  const Index w = in.width;
  ddpm::detail::parallel_for(in.batch * in.height, 4 * w * c, [&](Index row) {
    // Input row `row` = (n, iy) fills output rows 2 * row and 2 * row + 1 of the (N * 2H) rows.
    for (Index ix = 0; ix < w; ++ix) {
      const Real* src = x.data() + (row * w + ix) * x.outerStride();
      for (Index dy = 0; dy < 2; ++dy) {
        Real* dst = y.data() + ((2 * row + dy) * 2 * w + 2 * ix) * y.outerStride();
        std::copy_n(src, c, dst);
        std::copy_n(src, c, dst + y.outerStride());
      }
    }
  });
}

/// The adjoint of upsample_nearest2x: dx[n, y, x, c] = the sum of the four gradients dy of the
/// pixels x[n, y, x, c] was copied to (in a fixed order), written into dx, or added to it with
/// `accumulate`. dy: (4 * in.pixels()) x C; dx: in.pixels() x C, not aliasing dy.
template <class Real>
void upsample_nearest2x_backward(Eigen::Ref<const Batch<Real>> dy, const ImageShape& in,
                                 Eigen::Ref<Batch<Real>> dx, bool accumulate = false) {
  detail::check_upsample<Real>(in, dx, "dx", dy.rows(), dy.cols(), "dy");
  const Index c = in.channels;
  const Index w = in.width;
  const Index s = dy.outerStride();
  ddpm::detail::parallel_for(in.batch * in.height, 4 * w * c, [&](Index row) {
    for (Index ix = 0; ix < w; ++ix) {
      const Real* top = dy.data() + (2 * row * 2 * w + 2 * ix) * s;
      const Real* bottom = top + 2 * w * s;
      const detail::ConstArrayMap<Real> a(top, c);
      const detail::ConstArrayMap<Real> b(top + s, c);
      const detail::ConstArrayMap<Real> d(bottom, c);
      const detail::ConstArrayMap<Real> e(bottom + s, c);
      detail::ArrayMap<Real> target(dx.data() + (row * w + ix) * dx.outerStride(), c);
      if (accumulate) {
        target += a + b + d + e;
      } else {
        target = a + b + d + e;
      }
    }
  });
}

}  // namespace ddpm::nn
