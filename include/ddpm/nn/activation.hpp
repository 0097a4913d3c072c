// SPDX-License-Identifier: MIT
// Element-wise activations (identity, ReLU, SiLU, GELU) as kernels on contiguous rows, and as
// stand-alone layers with a hand-written backward pass.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <numbers>
#include <string_view>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::nn {

/// The activation applied after a Linear layer (fused into its bias pass) or by a stand-alone
/// layer.
enum class Activation {
  identity,  ///< f(z) = z
  relu,      ///< f(z) = max(z, 0)
  silu,      ///< f(z) = z * sigmoid(z)  (a.k.a. swish)
  gelu,      ///< tanh approximation: 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))
};

}  // namespace ddpm::nn

namespace ddpm {

/// Names of nn::Activation for ddpm::to_string and ddpm::parse_enum, e.g. "silu".
template <>
struct EnumTable<nn::Activation> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "activation";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<nn::Activation>, 4> names = {
      {{nn::Activation::identity, "identity"},
       {nn::Activation::relu, "relu"},
       {nn::Activation::silu, "silu"},
       {nn::Activation::gelu, "gelu"}}};
};

}  // namespace ddpm

namespace ddpm::nn {

namespace detail {

template <class Real>
using ArrayMap = Eigen::Map<Eigen::Array<Real, Eigen::Dynamic, 1>>;
template <class Real>
using ConstArrayMap = Eigen::Map<const Eigen::Array<Real, Eigen::Dynamic, 1>>;

/// Backward kernels need an intermediate (the sigmoid, the tanh) twice; they evaluate it into a
/// stack array of this many elements per block, so no heap temporary is made and dz may alias dy.
inline constexpr Index kActivationBlock = 64;
template <class Real>
using BlockArray = Eigen::Array<Real, Eigen::Dynamic, 1, 0, kActivationBlock, 1>;

/// Each kernel: forward(z, y, n) writes y = f(z) (y may equal z); backward(z, dy, dz, n) writes
/// dz = dy * f'(z) (dz may equal dy). All pointers address n contiguous elements.
struct IdentityKernel {
  template <class Real>
  static void forward(const Real* z, Real* y, Index n) noexcept {
    if (y != z) std::copy(z, z + n, y);
  }
  template <class Real>
  static void backward(const Real* /*z*/, const Real* dy, Real* dz, Index n) noexcept {
    if (dz != dy) std::copy(dy, dy + n, dz);
  }
};

struct ReluKernel {
  template <class Real>
  static void forward(const Real* z, Real* y, Index n) noexcept {
    ArrayMap<Real>(y, n) = ConstArrayMap<Real>(z, n).max(Real(0));
  }
  template <class Real>
  static void backward(const Real* z, const Real* dy, Real* dz, Index n) noexcept {
    ArrayMap<Real>(dz, n) =
        (ConstArrayMap<Real>(z, n) > Real(0)).select(ConstArrayMap<Real>(dy, n), Real(0));
  }
};

struct SiluKernel {
  template <class Real>
  static void forward(const Real* z, Real* y, Index n) noexcept {
    const ConstArrayMap<Real> zv(z, n);
    ArrayMap<Real>(y, n) = zv / (Real(1) + (-zv).exp());
  }
  // d/dz [z s(z)] = s (1 + z (1 - s)), s = sigmoid(z).
  template <class Real>
  static void backward(const Real* z, const Real* dy, Real* dz, Index n) noexcept {
    for (Index start = 0; start < n; start += kActivationBlock) {
      const Index m = std::min(kActivationBlock, n - start);
      const ConstArrayMap<Real> zv(z + start, m);
      const BlockArray<Real> s = (Real(1) + (-zv).exp()).inverse();
      ArrayMap<Real>(dz + start, m) =
          ConstArrayMap<Real>(dy + start, m) * s * (Real(1) + zv * (Real(1) - s));
    }
  }
};

struct GeluKernel {
  static constexpr double kC = 0.7978845608028654;  // sqrt(2 / pi)
  static constexpr double kA = 0.044715;

  template <class Real>
  static void forward(const Real* z, Real* y, Index n) noexcept {
    const ConstArrayMap<Real> zv(z, n);
    ArrayMap<Real>(y, n) =
        Real(0.5) * zv * (Real(1) + (Real(kC) * (zv + Real(kA) * zv.cube())).tanh());
  }
  // d/dz = 0.5 (1 + th) + 0.5 z (1 - th^2) c (1 + 3 a z^2), th = tanh(c (z + a z^3)).
  template <class Real>
  static void backward(const Real* z, const Real* dy, Real* dz, Index n) noexcept {
    for (Index start = 0; start < n; start += kActivationBlock) {
      const Index m = std::min(kActivationBlock, n - start);
      const ConstArrayMap<Real> zv(z + start, m);
      const BlockArray<Real> th = (Real(kC) * (zv + Real(kA) * zv.cube())).tanh();
      ArrayMap<Real>(dz + start, m) =
          ConstArrayMap<Real>(dy + start, m) *
          (Real(0.5) * (Real(1) + th) +
           Real(0.5 * kC) * zv * (Real(1) - th.square()) * (Real(1) + Real(3 * kA) * zv.square()));
    }
  }
};

/// Calls body(Kernel{}) with the kernel of `activation`, so the row loops are compiled once per
/// activation and the switch runs once per call rather than once per element.
template <class Body>
decltype(auto) with_activation(Activation activation, Body&& body) {
  switch (activation) {
    case Activation::relu:
      return body(ReluKernel{});
    case Activation::silu:
      return body(SiluKernel{});
    case Activation::gelu:
      return body(GeluKernel{});
    case Activation::identity:
      break;
  }
  return body(IdentityKernel{});
}

}  // namespace detail

/// A parameter-free element-wise layer y = f(x). Stateless: backward() gets x again.
/// \code
///   nn::SiLU<float> act;
///   act.forward(x, y);           // y = x * sigmoid(x)
///   act.backward(x, dy, dx);     // dx = dy * silu'(x)
/// \endcode
template <class Real, class Kernel>
class Elementwise {
 public:
  /// y = f(x); y must already have x's shape and may be x itself.
  void forward(Eigen::Ref<const Batch<Real>> x, Eigen::Ref<Batch<Real>> y) const {
    ddpm::detail::require_shape(y.rows() == x.rows() && y.cols() == x.cols(), "y", y.rows(),
                                y.cols(), "the shape of the layer input x");
    const Index cols = x.cols();
    ddpm::detail::parallel_for(x.rows(), cols, [&](Index r) {
      Kernel::forward(x.data() + r * x.outerStride(), y.data() + r * y.outerStride(), cols);
    });
  }

  /// dx = dy * f'(x) (x is the forward input); dx may be dy itself.
  void backward(Eigen::Ref<const Batch<Real>> x, Eigen::Ref<const Batch<Real>> dy,
                Eigen::Ref<Batch<Real>> dx) const {
    ddpm::detail::require_shape(dy.rows() == x.rows() && dy.cols() == x.cols(), "dy", dy.rows(),
                                dy.cols(), "the shape of the layer input x");
    ddpm::detail::require_shape(dx.rows() == x.rows() && dx.cols() == x.cols(), "dx", dx.rows(),
                                dx.cols(), "the shape of the layer input x");
    const Index cols = x.cols();
    ddpm::detail::parallel_for(x.rows(), cols, [&](Index r) {
      Kernel::backward(x.data() + r * x.outerStride(), dy.data() + r * dy.outerStride(),
                       dx.data() + r * dx.outerStride(), cols);
    });
  }
};

/// ReLU layer, f(z) = max(z, 0).
template <class Real>
using ReLU = Elementwise<Real, detail::ReluKernel>;
/// SiLU layer, f(z) = z sigmoid(z).
template <class Real>
using SiLU = Elementwise<Real, detail::SiluKernel>;
/// GELU layer, tanh approximation (PyTorch's approximate="tanh").
template <class Real>
using GELU = Elementwise<Real, detail::GeluKernel>;

}  // namespace ddpm::nn
