// SPDX-License-Identifier: MIT
// 2-D convolution of channels-last image batches: im2col tiles times the weight matrix, and a
// hand-written backward pass that recomputes its tiles from the input instead of keeping them.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/image.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// y = conv(x, W) + b on channels-last batches (see ImageShape), zero padding, square kernel.
///
/// W is stored (kernel * kernel * in_channels) x out_channels, row (ky * kernel + kx) *
/// in_channels + ci: the column order of a channels-last im2col matrix, so the forward pass is
/// im2col(x) W. PyTorch's `Conv2d.weight` (out, in, ky, kx) maps to W[(ky*k + kx)*in + ci, co].
/// Parameters: "<name>.weight", "<name>.bias" (1 x out_channels).
///
/// The batch is cut into tiles of output pixels; each thread expands its tiles into a small
/// im2col buffer of its own and multiplies it by W, so no batch-sized buffer exists. A convolution
/// is linear in x, so backward() takes x again and rebuilds each tile rather than storing it (it
/// needs no earlier forward() and the layer keeps no activations). A 1x1 stride-1 convolution
/// without padding skips im2col: its GEMMs read x itself. The products run on ddpm's packed GEMM
/// (nn/detail/gemm.hpp) with the bias added per finished block. Results do not depend on the number
/// of threads.
///
/// \code
///   nn::ParameterStore<float> store;
///   nn::Conv2d<float> conv(store, "down0", 32, 64, 3, /*stride=*/2);
///   store.allocate();
///   conv.bind(store);
///   conv.initialize(ddpm::CounterRng(1), 0);
///   const nn::ImageShape in{64, 28, 28, 32};
///   Batch<float> y(conv.output_shape(in).pixels(), 64);
///   conv.forward(x, in, y);
///   conv.backward(x, in, dy, dx);  // W.grad += ..., b.grad += ..., dx = ...
/// \endcode
template <class Real>
class Conv2d {
 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;
  /// A writable row-major batch view.
  using Ref = Eigen::Ref<Batch<Real>>;
  /// The weight matrix (in * kernel^2 x out), viewed in place in the parameter store.
  using WeightMap = Eigen::Map<Batch<Real>>;
  /// \copydoc WeightMap
  using ConstWeightMap = Eigen::Map<const Batch<Real>>;
  /// The bias row (out), viewed in place in the parameter store.
  using BiasMap = Eigen::Map<RowVector<Real>>;
  /// \copydoc BiasMap
  using ConstBiasMap = Eigen::Map<const RowVector<Real>>;

  /// Output pixels per im2col tile: 128 rows of a 3x3x64 patch are 288 KB of floats, which stay
  /// in a core's L2 cache, next to the copy Eigen's GEMM packs from them, until the GEMM reads
  /// them.
  static constexpr Index kTileRows = 128;
  /// At most this many image groups in backward(): the weight gradient is summed per group and
  /// the groups are added in order, so the result does not depend on the thread count (and more
  /// threads than groups leave cores idle in backward).
  static constexpr Index kMaxGroups = 16;

  Conv2d() = default;

  /// Registers "<name>.weight" ((kernel*kernel*in_channels) x out_channels) and "<name>.bias"
  /// (1 x out_channels). kernel: odd, >= 1; stride: 1 or 2; padding: >= 0, or -1 for kernel / 2
  /// (a stride-1 convolution then keeps the image size).
  Conv2d(ParameterStore<Real>& store, const std::string& name, Index in_channels,
         Index out_channels, Index kernel, Index stride = 1, Index padding = -1)
      : in_(in_channels),
        out_(out_channels),
        kernel_(kernel),
        stride_(stride),
        padding_(padding == -1 ? kernel / 2 : padding) {
    ddpm::detail::require(in_channels >= 1, name + ".in_channels", in_channels, ">= 1");
    ddpm::detail::require(out_channels >= 1, name + ".out_channels", out_channels, ">= 1");
    ddpm::detail::require(kernel >= 1 && kernel % 2 == 1, name + ".kernel", kernel,
                          "an odd number >= 1");
    ddpm::detail::require(stride == 1 || stride == 2, name + ".stride", stride, "1 or 2");
    ddpm::detail::require(padding >= -1, name + ".padding", padding, ">= 0, or -1 for kernel / 2");
    weight_slot_ = store.add(name + ".weight", patch(), out_);
    bias_slot_ = store.add(name + ".bias", 1, out_);
  }

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    weight_ = store.value_data(weight_slot_);
    bias_ = store.value_data(bias_slot_);
    weight_grad_ = store.grad_data(weight_slot_);
    bias_grad_ = store.grad_data(bias_slot_);
  }

  /// PyTorch's default: W and b ~ uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in =
  /// in_channels * kernel^2, drawn from `rng` as draws of (stream::init, layer, 0) and
  /// (stream::init, layer, 1). `zero` sets both to zero instead (an output layer that starts as
  /// the identity of its residual path).
  void initialize(const CounterRng& rng, std::uint32_t layer, bool zero = false) {
    const std::span<Real> w(weight_, static_cast<std::size_t>(patch() * out_));
    const std::span<Real> b(bias_, static_cast<std::size_t>(out_));
    if (zero) {
      std::fill(w.begin(), w.end(), Real(0));
      std::fill(b.begin(), b.end(), Real(0));
      return;
    }
    const double bound = 1.0 / std::sqrt(static_cast<double>(patch()));
    fill_uniform(w, bound, rng, layer, 0);
    fill_uniform(b, bound, rng, layer, 1);
  }

  /// Input channels.
  [[nodiscard]] Index in_channels() const noexcept { return in_; }
  /// Output channels.
  [[nodiscard]] Index out_channels() const noexcept { return out_; }
  /// The kernel's side (square kernels).
  [[nodiscard]] Index kernel() const noexcept { return kernel_; }
  /// The step between output pixels, in input pixels.
  [[nodiscard]] Index stride() const noexcept { return stride_; }
  /// Zero pixels added on each side of the input.
  [[nodiscard]] Index padding() const noexcept { return padding_; }

  /// The weights (in * kernel^2 x out), one column per output channel.
  [[nodiscard]] WeightMap weight() noexcept { return WeightMap(weight_, patch(), out_); }
  /// \copydoc weight()
  [[nodiscard]] ConstWeightMap weight() const noexcept {
    return ConstWeightMap(weight_, patch(), out_);
  }
  /// The bias (1 x out).
  [[nodiscard]] BiasMap bias() noexcept { return BiasMap(bias_, out_); }
  /// \copydoc bias()
  [[nodiscard]] ConstBiasMap bias() const noexcept { return ConstBiasMap(bias_, out_); }
  /// The gradient of the weights, accumulated by backward().
  [[nodiscard]] WeightMap weight_grad() noexcept { return WeightMap(weight_grad_, patch(), out_); }
  /// The gradient of the bias, accumulated by backward().
  [[nodiscard]] BiasMap bias_grad() noexcept { return BiasMap(bias_grad_, out_); }

  /// The shape of the output for input shape `in`: {batch, (H + 2p - k)/s + 1, (W + 2p - k)/s +
  /// 1, out_channels}. Throws InvalidArgument unless in.channels == in_channels, height and width
  /// are >= 1 and the output is at least 1x1.
  [[nodiscard]] ImageShape output_shape(const ImageShape& in) const {
    ddpm::detail::require(in.channels == in_, "in.channels", in.channels,
                          [&] { return "in_channels = " + ddpm::detail::to_text(in_); });
    ddpm::detail::require(in.batch >= 0, "in.batch", in.batch, ">= 0");
    ddpm::detail::require(in.height >= 1 && in.height + 2 * padding_ >= kernel_, "in.height",
                          in.height,
                          [&] { return ">= 1 and >= kernel - 2 * padding = " + min_size_text(); });
    ddpm::detail::require(in.width >= 1 && in.width + 2 * padding_ >= kernel_, "in.width", in.width,
                          [&] { return ">= 1 and >= kernel - 2 * padding = " + min_size_text(); });
    return {in.batch, (in.height + 2 * padding_ - kernel_) / stride_ + 1,
            (in.width + 2 * padding_ - kernel_) / stride_ + 1, out_};
  }

  /// y = conv(x) + b, or y += conv(x) + b with `accumulate` (a residual add). x: in.pixels() x
  /// in_channels; y: output_shape(in).pixels() x out_channels, not aliasing x. Either may be a
  /// column block of a wider matrix.
  void forward(ConstRef x, const ImageShape& in, Ref y, bool accumulate = false) {
    const Geometry g = geometry(x, in);
    ddpm::detail::require_shape(y.rows() == g.out.pixels() && y.cols() == out_, "y", y.rows(),
                                y.cols(), "output_shape(in).pixels() x out_channels");
    const Index rows = g.out.pixels();
    const Index tiles = (rows + kTileRows - 1) / kTileRows;
    // W is packed once per call and shared by every thread and tile.
    packed_weight_.pack(ddpm::nn::detail::StridedMatrix<Real>{weight_, out_, 1}, patch(), out_);
    for_each_worker(tiles, rows * patch() * out_, [&](Index first, Index last, Real* col) {
      for (Index tile = first; tile < last; ++tile) {
        const Index begin = tile * kTileRows;
        const Index count = std::min(kTileRows, rows - begin);
        Real* y_tile = y.data() + begin * y.outerStride();
        const Index ldy = y.outerStride();
        const auto add_bias = [&](Index i, Index j, Index tile_rows, Index cols) {
          for (Index r = i; r < i + tile_rows; ++r) {
            detail::ArrayMap<Real>(y_tile + r * ldy + j, cols) +=
                detail::ConstArrayMap<Real>(bias_ + j, cols);
          }
        };
        if (direct()) {
          ddpm::nn::detail::gemm_serial(count, ddpm::nn::detail::strided(rows_of(x, begin, count)),
                                        packed_weight_, y_tile, ldy, accumulate, add_bias);
        } else {
          im2col(x, g, begin, count, col);
          ddpm::nn::detail::gemm_serial(count,
                                        ddpm::nn::detail::StridedMatrix<Real>{col, patch(), 1},
                                        packed_weight_, y_tile, ldy, accumulate, add_bias);
        }
      }
    });
  }

  /// Accumulates W.grad += im2col(x)^T dy and b.grad += the column sums of dy, for the forward
  /// input x of shape `in` and the gradient dy of the output.
  void backward(ConstRef x, const ImageShape& in, ConstRef dy) {
    backward_impl(x, in, dy, nullptr, false);
  }

  /// As backward(x, in, dy), and also writes dx = col2im(dy W^T), or adds it when
  /// `accumulate_dx` (how a residual branch joins its skip path). dx has x's shape and must alias
  /// neither x nor dy.
  void backward(ConstRef x, const ImageShape& in, ConstRef dy, Ref dx, bool accumulate_dx = false) {
    backward_impl(x, in, dy, &dx, accumulate_dx);
  }

 private:
  /// Elements per parallel block when the per-group weight gradients are summed.
  static constexpr Index kReduceBlock = 4096;

  struct Geometry {
    ImageShape in;
    ImageShape out;
  };

  [[nodiscard]] Index patch() const noexcept { return kernel_ * kernel_ * in_; }
  /// The patch of the transposed convolution (over dy's channels) that computes dx.
  [[nodiscard]] Index transposed_patch() const noexcept { return kernel_ * kernel_ * out_; }
  [[nodiscard]] bool direct() const noexcept {
    return kernel_ == 1 && stride_ == 1 && padding_ == 0;
  }
  [[nodiscard]] std::string min_size_text() const {
    return ddpm::detail::to_text(std::max<Index>(1, kernel_ - 2 * padding_));
  }

  Geometry geometry(const ConstRef& x, const ImageShape& in) const {
    const ImageShape out = output_shape(in);
    ddpm::detail::require_shape(x.rows() == in.pixels() && x.cols() == in_, "x", x.rows(), x.cols(),
                                "in.pixels() x in_channels");
    return {in, out};
  }

  static ConstStridedMap<Real> rows_of(const ConstRef& m, Index begin, Index count) {
    return ConstStridedMap<Real>(m.data() + begin * m.outerStride(), count, m.cols(),
                                 Eigen::OuterStride<>(m.outerStride()));
  }

  /// Runs body(first, last, scratch) over items [0, count), scratch being the running thread's
  /// kTileRows-row buffer; in parallel when `work` (multiply-adds in all) is worth a fork. Items
  /// go to the threads one at a time as they finish (a core slowed by another tenant takes fewer);
  /// an item's arithmetic does not depend on the thread that runs it, so results are bitwise
  /// equal on any thread count. Each thread runs single-threaded products (gemm_serial), and the
  /// thin ones gemm_serial hands to Eigen stay single-threaded inside the parallel region.
  template <class Body>
  void for_each_worker(Index count, Index work, Body&& body) {
    const Index workers = ddpm::detail::max_threads();
    if (static_cast<Index>(scratch_.size()) < workers) scratch_.resize(workers);
    const bool needs_scratch = !direct();
    // Wide enough for im2col(x) and for the transposed pass's im2col(dy).
    const Index width = std::max(patch(), transposed_patch());
    for (Index t = 0; t < workers; ++t) {
      if (needs_scratch) scratch_[t].resize(kTileRows, width);
    }
    if (work < ddpm::detail::kMinParallelWork || count < 2) {
      body(0, count, scratch_[0].data());
      return;
    }
    ddpm::detail::parallel_for_dynamic(count, [&](Index item) {
      body(item, item + 1, scratch_[ddpm::detail::thread_index()].data());
    });
  }

  /// Calls pad(r, offset, n) for the n im2col entries of row r starting at column `offset` that
  /// fall into the zero padding, and run(r, offset, pixel, n) for each horizontal run of n input
  /// pixels (rows pixel .. pixel + n - 1 of x) whose channels fill columns offset .. offset + n *
  /// in_channels - 1, for the output pixels first .. first + rows - 1.
  /// `g` is the geometry of the convolution being expanded: channels and padding are those of
  /// its input (a transposed pass expands dy with the flipped kernel's padding).
  template <class Pad, class Run>
  void for_each_patch_run(const Geometry& g, Index channels, Index padding, Index first, Index rows,
                          Pad&& pad, Run&& run) const {
    const Index out_plane = g.out.plane();
    Index n = first / out_plane;
    Index oy = first % out_plane / g.out.width;
    Index ox = first % out_plane % g.out.width;
    const Index k = kernel_;
    const Index c = channels;
    for (Index r = 0; r < rows; ++r) {
      const Index y0 = oy * stride_ - padding;
      const Index x0 = ox * stride_ - padding;
      // In-range kernel columns [kx_lo, kx_hi) are the same for every kernel row.
      const Index kx_lo = std::clamp<Index>(-x0, 0, k);
      const Index kx_hi = std::clamp<Index>(g.in.width - x0, kx_lo, k);
      for (Index ky = 0; ky < k; ++ky) {
        const Index iy = y0 + ky;
        const Index offset = ky * k * c;
        if (iy < 0 || iy >= g.in.height) {
          pad(r, offset, k * c);
          continue;
        }
        if (kx_lo > 0) pad(r, offset, kx_lo * c);
        if (kx_hi > kx_lo) {
          run(r, offset + kx_lo * c, (n * g.in.height + iy) * g.in.width + x0 + kx_lo,
              kx_hi - kx_lo);
        }
        if (kx_hi < k) pad(r, offset + kx_hi * c, (k - kx_hi) * c);
      }
      if (++ox == g.out.width) {
        ox = 0;
        if (++oy == g.out.height) {
          oy = 0;
          ++n;
        }
      }
    }
  }

  /// col (rows x patch(), row-major) = the receptive fields of output pixels first .. first +
  /// rows - 1, zeros in the padding.
  void im2col(const ConstRef& x, const Geometry& g, Index first, Index rows, Real* col) const {
    im2col(x, g, in_, padding_, first, rows, col);
  }

  /// im2col of x with `channels` channels and `padding`, for the geometry g.
  void im2col(const ConstRef& x, const Geometry& g, Index channels, Index padding, Index first,
              Index rows, Real* col) const {
    const Index c = channels;
    const Index width = kernel_ * kernel_ * c;
    const Index stride = x.outerStride();
    for_each_patch_run(
        g, c, padding, first, rows,
        [&](Index r, Index offset, Index n) {
          detail::ArrayMap<Real>(col + r * width + offset, n).setZero();
        },
        [&](Index r, Index offset, Index pixel, Index n) {
          Real* dst = col + r * width + offset;
          const Real* src = x.data() + pixel * stride;
          if (stride == c) {
            detail::ArrayMap<Real>(dst, n * c) =
                detail::ConstArrayMap<Real>(src, n * c);  // one run
            return;
          }
          for (Index i = 0; i < n; ++i) {
            detail::ArrayMap<Real>(dst + i * c, c) =
                detail::ConstArrayMap<Real>(src + i * stride, c);
          }
        });
  }

  /// dx += the scatter of dcol (rows x patch(), the gradient of the im2col rows of output pixels
  /// first .. first + rows - 1) back onto the input pixels; entries in the padding are dropped.
  void col2im_add(const Real* dcol, const Geometry& g, Index first, Index rows, Ref& dx) const {
    const Index width = patch();
    const Index stride = dx.outerStride();
    const Index c = in_;
    for_each_patch_run(
        g, c, padding_, first, rows, [](Index, Index, Index) {},
        [&](Index r, Index offset, Index pixel, Index n) {
          const Real* src = dcol + r * width + offset;
          Real* dst = dx.data() + pixel * stride;
          if (stride == c) {
            detail::ArrayMap<Real>(dst, n * c) += detail::ConstArrayMap<Real>(src, n * c);
            return;
          }
          for (Index i = 0; i < n; ++i) {
            detail::ArrayMap<Real>(dst + i * stride, c) +=
                detail::ConstArrayMap<Real>(src + i * c, c);
          }
        });
  }

  void backward_impl(const ConstRef& x, const ImageShape& in, const ConstRef& dy, Ref* dx,
                     bool accumulate) {
    const Geometry g = geometry(x, in);
    ddpm::detail::require_shape(dy.rows() == g.out.pixels() && dy.cols() == out_, "dy", dy.rows(),
                                dy.cols(), "output_shape(in).pixels() x out_channels");
    if (dx != nullptr) {
      ddpm::detail::require_shape(dx->rows() == in.pixels() && dx->cols() == in_, "dx", dx->rows(),
                                  dx->cols(), "in.pixels() x in_channels, the shape of x");
    }
    if (in.batch == 0) return;
    // Groups of whole images: the input pixels a group reads (and whose dx it scatters into)
    // belong to no other group, so groups run in parallel without races.
    const Index per_group = (in.batch + kMaxGroups - 1) / kMaxGroups;
    const Index groups = (in.batch + per_group - 1) / per_group;
    const Index k = patch();
    Eigen::Map<Batch<Real>> weight_partials = weight_partials_.resize(groups, k * out_);
    Eigen::Map<Batch<Real>> bias_partials = bias_partials_.resize(groups, out_);
    // A stride-1 convolution's input gradient is itself a convolution: of dy with the kernel
    // flipped and transposed, padding k - 1 - p. It gathers (im2col of dy) where the general path
    // scatters (col2im), and writes dx once, without zeroing it first. Either way the weights it
    // multiplies by are packed once per call and shared by every thread and tile.
    const bool transposed_dx =
        dx != nullptr && !direct() && stride_ == 1 && padding_ <= kernel_ - 1;
    // Otherwise dx is computed per group of images, beside the weight gradient.
    const bool dx_in_groups = dx != nullptr && !transposed_dx;
    if (transposed_dx) {
      pack_flipped_weight();
    } else if (dx != nullptr) {
      packed_weight_.pack(ddpm::nn::detail::StridedMatrix<Real>{weight_, 1, out_}, out_, k);
    }
    const Index out_image = g.out.plane();
    for_each_worker(
        groups, g.out.pixels() * k * out_ * (dx_in_groups ? 2 : 1),
        [&](Index first, Index last, Real* col) {
          for (Index group = first; group < last; ++group) {
            const Index image_begin = group * per_group;
            const Index image_end = std::min(in.batch, image_begin + per_group);
            const Index begin = image_begin * out_image;
            const Index end = image_end * out_image;
            Real* dw = weight_partials.data() + group * k * out_;
            detail::ArrayMap<Real> db(bias_partials.data() + group * out_, out_);
            db.setZero();
            for (Index r = begin; r < end; ++r) {
              db += detail::ConstArrayMap<Real>(dy.data() + r * dy.outerStride(), out_);
            }
            if (direct()) {
              // One product per group: x needs no expansion, so there is no tile buffer to bound.
              const auto x_rows = ddpm::nn::detail::strided(rows_of(x, begin, end - begin));
              const auto dy_rows = ddpm::nn::detail::strided(rows_of(dy, begin, end - begin));
              ddpm::nn::detail::gemm_serial(in_, out_, end - begin, x_rows.transposed(), dy_rows,
                                            dw, out_, false);
              if (dx != nullptr) {
                ddpm::nn::detail::gemm_serial(end - begin, dy_rows, packed_weight_,
                                              dx->data() + begin * dx->outerStride(),
                                              dx->outerStride(), accumulate);
              }
              continue;
            }
            if (dx_in_groups && !accumulate) {
              const Index in_image = g.in.plane();
              for (Index r = image_begin * in_image; r < image_end * in_image; ++r) {
                detail::ArrayMap<Real>(dx->data() + r * dx->outerStride(), in_).setZero();
              }
            }
            for (Index tile = begin; tile < end; tile += kTileRows) {
              const Index count = std::min(kTileRows, end - tile);
              im2col(x, g, tile, count, col);
              const auto dy_rows = ddpm::nn::detail::strided(rows_of(dy, tile, count));
              const ddpm::nn::detail::StridedMatrix<Real> col_rows{col, k, 1};
              ddpm::nn::detail::gemm_serial(k, out_, count, col_rows.transposed(), dy_rows, dw,
                                            out_, tile != begin);
              if (dx_in_groups) {
                // The tile is no longer needed: it takes dy W^T, then scatters into dx.
                ddpm::nn::detail::gemm_serial(count, dy_rows, packed_weight_, col, k, false);
                col2im_add(col, g, tile, count, *dx);
              }
            }
          }
        });
    // Fixed order over groups: the sums do not depend on which thread made which partial.
    const Index size = k * out_;
    const Index blocks = (size + kReduceBlock - 1) / kReduceBlock;
    Real* total = weight_partials.data();
    ddpm::detail::parallel_for(blocks, groups * kReduceBlock, [&](Index block) {
      const Index begin = block * kReduceBlock;
      const Index count = std::min(kReduceBlock, size - begin);
      detail::ArrayMap<Real> sum(total + begin, count);
      for (Index group = 1; group < groups; ++group) {
        sum += detail::ConstArrayMap<Real>(total + group * size + begin, count);
      }
      detail::ArrayMap<Real>(weight_grad_ + begin, count) += sum;
    });
    detail::ArrayMap<Real> bias_grad_map(bias_grad_, out_);
    for (Index group = 0; group < groups; ++group) {
      bias_grad_map += detail::ConstArrayMap<Real>(bias_partials.data() + group * out_, out_);
    }
    if (transposed_dx) transposed_input_gradient(dy, g, *dx, accumulate);
  }

  /// Packs W' (kernel^2 * out x in): W'[((k-1-ky) k + (k-1-kx)) out + co, ci] =
  /// W[(ky k + kx) in + ci, co], the kernel of the transposed convolution.
  void pack_flipped_weight() {
    const Index k = kernel_;
    Eigen::Map<Batch<Real>> flipped = flipped_weight_.resize(transposed_patch(), in_);
    const ConstWeightMap w(weight_, patch(), out_);
    for (Index ky = 0; ky < k; ++ky) {
      for (Index kx = 0; kx < k; ++kx) {
        flipped.middleRows(((k - 1 - ky) * k + (k - 1 - kx)) * out_, out_) =
            w.middleRows((ky * k + kx) * in_, in_).transpose();
      }
    }
    packed_weight_.pack(ddpm::nn::detail::strided(flipped), transposed_patch(), in_);
  }

  /// dx (=/+=) conv(dy, W') with padding k - 1 - p, tile by tile over the input pixels.
  void transposed_input_gradient(const ConstRef& dy, const Geometry& g, Ref& dx, bool accumulate) {
    const Geometry back{g.out, g.in};
    const Index back_padding = kernel_ - 1 - padding_;
    const Index width = transposed_patch();
    const Index rows = g.in.pixels();
    const Index tiles = (rows + kTileRows - 1) / kTileRows;
    for_each_worker(tiles, rows * width * in_, [&](Index first, Index last, Real* col) {
      for (Index tile = first; tile < last; ++tile) {
        const Index begin = tile * kTileRows;
        const Index count = std::min(kTileRows, rows - begin);
        im2col(dy, back, out_, back_padding, begin, count, col);
        ddpm::nn::detail::gemm_serial(count, ddpm::nn::detail::StridedMatrix<Real>{col, width, 1},
                                      packed_weight_, dx.data() + begin * dx.outerStride(),
                                      dx.outerStride(), accumulate);
      }
    });
  }

  Index in_ = 0;
  Index out_ = 0;
  Index kernel_ = 1;
  Index stride_ = 1;
  Index padding_ = 0;
  typename ParameterStore<Real>::Slot weight_slot_{};
  typename ParameterStore<Real>::Slot bias_slot_{};
  // Raw pointers rather than Eigen::Map members: a Map's operator= copies values, which would make
  // the defaulted copy of a layer write into the source model's buffer.
  Real* weight_ = nullptr;
  Real* bias_ = nullptr;
  Real* weight_grad_ = nullptr;
  Real* bias_grad_ = nullptr;
  std::vector<Workspace<Real>> scratch_;  // one im2col tile per thread
  Workspace<Real> weight_partials_;       // per-group weight gradients, groups x (patch * out)
  Workspace<Real> bias_partials_;         // per-group bias gradients, groups x out
  // W (forward), or W^T or the flipped W' (backward, for dx), packed once per call.
  ddpm::nn::detail::PackedRhs<Real> packed_weight_;
  Workspace<Real> flipped_weight_;  // W' of the transposed convolution, kernel^2 * out x in
};

}  // namespace ddpm::nn
