// SPDX-License-Identifier: MIT
// Tests of nn::Conv2d: forward and backward against direct loops, backward against central finite
// differences, thread-count independence, and the checks of bad arguments.
#include "ddpm/nn/conv2d.hpp"

#include <doctest/doctest.h>

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "ddpm/nn/image.hpp"
#include "support.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace conv2d_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::Conv2d;
using ddpm::nn::ImageShape;
using ddpm::test::flat;
using ddpm::test::random_batch;

struct Config {
  Index kernel;
  Index stride;
  Index padding;
};

// Kernels 1 and 3, strides 1 and 2, paddings 0 and 1 (a 1x1 kernel with padding 1 gives a border
// of pure bias), and a 5x5 kernel.
std::vector<Config> configs() {
  std::vector<Config> all;
  for (const Index kernel : {1, 3}) {
    for (const Index stride : {1, 2}) {
      for (const Index padding : {0, 1}) all.push_back({kernel, stride, padding});
    }
  }
  all.push_back({5, 1, 2});
  all.push_back({5, 2, 1});
  return all;
}

Index out_size(Index size, const Config& c) {
  return (size + 2 * c.padding - c.kernel) / c.stride + 1;
}

// Input pixel (n, iy, ix) for kernel tap (ky, kx) of output pixel (n, oy, ox), or -1 in the
// padding.
Index input_row(const ImageShape& in, const Config& c, Index n, Index oy, Index ox, Index ky,
                Index kx) {
  const Index iy = oy * c.stride - c.padding + ky;
  const Index ix = ox * c.stride - c.padding + kx;
  if (iy < 0 || iy >= in.height || ix < 0 || ix >= in.width) return -1;
  return (n * in.height + iy) * in.width + ix;
}

// The direct 7-loop convolution, in double.
Batch<double> naive_forward(const Batch<double>& x, const ImageShape& in, const Batch<double>& w,
                            const Batch<double>& b, const Config& c) {
  const Index oh = out_size(in.height, c);
  const Index ow = out_size(in.width, c);
  const Index cout = w.cols();
  Batch<double> y(in.batch * oh * ow, cout);
  for (Index n = 0; n < in.batch; ++n) {
    for (Index oy = 0; oy < oh; ++oy) {
      for (Index ox = 0; ox < ow; ++ox) {
        for (Index co = 0; co < cout; ++co) {
          double sum = b(0, co);
          for (Index ky = 0; ky < c.kernel; ++ky) {
            for (Index kx = 0; kx < c.kernel; ++kx) {
              const Index row = input_row(in, c, n, oy, ox, ky, kx);
              if (row < 0) continue;
              for (Index ci = 0; ci < in.channels; ++ci) {
                sum += x(row, ci) * w((ky * c.kernel + kx) * in.channels + ci, co);
              }
            }
          }
          y((n * oh + oy) * ow + ox, co) = sum;
        }
      }
    }
  }
  return y;
}

// The direct loops of the backward pass: dW, db and dx of sum(dy .* y).
struct NaiveGrads {
  Batch<double> dw, db, dx;
};
NaiveGrads naive_backward(const Batch<double>& x, const ImageShape& in, const Batch<double>& w,
                          const Batch<double>& dy, const Config& c) {
  const Index oh = out_size(in.height, c);
  const Index ow = out_size(in.width, c);
  NaiveGrads g{Batch<double>::Zero(w.rows(), w.cols()), dy.colwise().sum(),
               Batch<double>::Zero(x.rows(), x.cols())};
  for (Index n = 0; n < in.batch; ++n) {
    for (Index oy = 0; oy < oh; ++oy) {
      for (Index ox = 0; ox < ow; ++ox) {
        const Index out_row = (n * oh + oy) * ow + ox;
        for (Index ky = 0; ky < c.kernel; ++ky) {
          for (Index kx = 0; kx < c.kernel; ++kx) {
            const Index row = input_row(in, c, n, oy, ox, ky, kx);
            if (row < 0) continue;
            for (Index ci = 0; ci < in.channels; ++ci) {
              const Index tap = (ky * c.kernel + kx) * in.channels + ci;
              for (Index co = 0; co < w.cols(); ++co) {
                g.dw(tap, co) += x(row, ci) * dy(out_row, co);
                g.dx(row, ci) += w(tap, co) * dy(out_row, co);
              }
            }
          }
        }
      }
    }
  }
  return g;
}

template <class Real>
struct Layer {
  ddpm::nn::ParameterStore<Real> store;
  Conv2d<Real> conv;
  Layer(Index cin, Index cout, const Config& c, std::uint64_t seed) {
    conv = Conv2d<Real>(store, "conv", cin, cout, c.kernel, c.stride, c.padding);
    store.allocate();
    conv.bind(store);
    conv.initialize(ddpm::CounterRng(seed), 0);
  }
};

template <class Real>
double max_abs_diff(const Batch<Real>& a, const Batch<double>& b) {
  return (a.template cast<double>() - b).cwiseAbs().maxCoeff();
}

// Relative error allowed between analytic and central-difference gradients. The loss sum(dy .* y)
// is linear in x and in the parameters, so central differences have no truncation error; with
// h = 1e-5 in double the round-off is ~1e-16 * |loss| / h ~ 1e-10 against a 1e-3 floor, and a
// wrong gradient is O(1).
constexpr double kGradTol = 1e-6;
constexpr double kStep = 1e-5;

}  // namespace

TEST_CASE_TEMPLATE("Conv2d forward matches the direct convolution", Real, float, double) {
  // Rounding: float sums of up to 5*5*4 products of O(1) terms stay within 1e-5 of the double
  // result; double within 1e-12.
  const double tol = sizeof(Real) == 4 ? 1e-5 : 1e-12;
  for (const Config& c : configs()) {
    for (const auto& channels : std::vector<std::pair<Index, Index>>{{1, 1}, {3, 2}, {4, 7}}) {
      const Index cin = channels.first;
      const Index cout = channels.second;
      CAPTURE(c.kernel);
      CAPTURE(c.stride);
      CAPTURE(c.padding);
      CAPTURE(cin);
      CAPTURE(cout);
      Layer<Real> layer(cin, cout, c, 3);
      const ImageShape in{3, 5, 7, cin};
      const ImageShape out = layer.conv.output_shape(in);
      CHECK(out == ImageShape{3, out_size(5, c), out_size(7, c), cout});
      const Batch<double> x = random_batch(in.pixels(), cin, 1);
      const Batch<double> expected =
          naive_forward(x, in, layer.conv.weight().template cast<double>(),
                        layer.conv.bias().template cast<double>(), c);
      const Batch<Real> xr = x.cast<Real>();
      Batch<Real> y(out.pixels(), cout);
      layer.conv.forward(xr, in, y);
      CHECK(max_abs_diff(y, expected) < tol);

      SUBCASE("accumulate adds to y") {
        const Batch<double> base = random_batch(out.pixels(), cout, 2);
        Batch<Real> acc = base.cast<Real>();
        layer.conv.forward(xr, in, acc, /*accumulate=*/true);
        CHECK(max_abs_diff(acc, expected + base) < 2 * tol);
      }
      SUBCASE("x and y may be column blocks of wider matrices") {
        Batch<Real> wide_x = random_batch(in.pixels(), cin + 5, 4).template cast<Real>();
        wide_x.middleCols(2, cin) = xr;
        Batch<Real> wide_y = Batch<Real>::Zero(out.pixels(), cout + 3);
        layer.conv.forward(wide_x.middleCols(2, cin), in, wide_y.middleCols(1, cout));
        CHECK(max_abs_diff(Batch<Real>(wide_y.middleCols(1, cout)), expected) < tol);
        CHECK(wide_y.col(0).cwiseAbs().maxCoeff() == 0);
        CHECK(wide_y.rightCols(2).cwiseAbs().maxCoeff() == 0);
      }
    }
  }
}

TEST_CASE("Conv2d forward and backward match the direct loops across tiles and image groups") {
  // 20 images of 17x19: 323 output pixels per image at stride 1, so tiles of kTileRows = 128
  // rows straddle images, and backward's 10 groups of 2 images each hold several tiles.
  static_assert(Conv2d<double>::kTileRows < 323 && Conv2d<double>::kMaxGroups == 16);
  for (const Config& c : {Config{3, 1, 1}, Config{3, 2, 1}, Config{1, 1, 0}}) {
    CAPTURE(c.kernel);
    CAPTURE(c.stride);
    Layer<double> layer(3, 4, c, 5);
    const ImageShape in{20, 17, 19, 3};
    const ImageShape out = layer.conv.output_shape(in);
    const Batch<double> x = random_batch(in.pixels(), 3, 6);
    const Batch<double> dy = random_batch(out.pixels(), 4, 7);
    const Batch<double> w = layer.conv.weight();
    Batch<double> y(out.pixels(), 4);
    layer.conv.forward(x, in, y);
    CHECK((y - naive_forward(x, in, w, layer.conv.bias(), c)).cwiseAbs().maxCoeff() < 1e-12);

    Batch<double> dx(in.pixels(), 3);
    layer.conv.backward(x, in, dy, dx);
    const NaiveGrads expected = naive_backward(x, in, w, dy, c);
    CHECK((Batch<double>(layer.conv.weight_grad()) - expected.dw).cwiseAbs().maxCoeff() < 1e-10);
    CHECK((Batch<double>(layer.conv.bias_grad()) - expected.db).cwiseAbs().maxCoeff() < 1e-10);
    CHECK((dx - expected.dx).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("Conv2d backward matches central finite differences") {
  for (const Config& c : configs()) {
    CAPTURE(c.kernel);
    CAPTURE(c.stride);
    CAPTURE(c.padding);
    Layer<double> layer(2, 3, c, 8);
    const ImageShape in{2, 5, 7, 2};
    const ImageShape out = layer.conv.output_shape(in);
    Batch<double> x = random_batch(in.pixels(), 2, 9);
    const Batch<double> weights = random_batch(out.pixels(), 3, 10);  // loss = sum(weights .* y)
    Batch<double> y(out.pixels(), 3);
    auto loss = [&] {
      layer.conv.forward(x, in, y);
      return (y.array() * weights.array()).sum();
    };

    layer.store.zero_grad();
    Batch<double> dx(in.pixels(), 2);
    layer.conv.backward(x, in, weights, dx);

    std::vector<double> numeric(static_cast<std::size_t>(layer.store.size()));
    ddpm::nn::numeric_gradient(loss, layer.store.values(), std::span<double>(numeric), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(layer.store.grads(), numeric) < kGradTol);

    Batch<double> numeric_dx(in.pixels(), 2);
    ddpm::nn::numeric_gradient(loss, flat(x), flat(numeric_dx), kStep);
    CHECK(ddpm::nn::max_gradient_error<double>(flat(dx), flat(numeric_dx)) < kGradTol);

    const std::vector<double> once(layer.store.grads().begin(), layer.store.grads().end());
    SUBCASE("a second backward, without dx, doubles the parameter gradients") {
      layer.conv.backward(x, in, weights);
      for (std::size_t i = 0; i < once.size(); ++i) {
        CHECK(layer.store.grads()[i] == doctest::Approx(2 * once[i]).epsilon(1e-12));
      }
    }
    SUBCASE("accumulate_dx adds to what dx holds") {
      const Batch<double> base = random_batch(in.pixels(), 2, 11);
      Batch<double> dx2 = base;
      layer.conv.backward(x, in, weights, dx2, /*accumulate_dx=*/true);
      CHECK((dx2 - base - dx).cwiseAbs().maxCoeff() < 1e-12);
    }
    SUBCASE("x, dy and dx may be column blocks of wider matrices") {
      Batch<double> wide_x = random_batch(in.pixels(), 6, 12);
      wide_x.middleCols(1, 2) = x;
      Batch<double> wide_dy = random_batch(out.pixels(), 7, 13);
      wide_dy.middleCols(3, 3) = weights;
      Batch<double> wide_dx = Batch<double>::Zero(in.pixels(), 5);
      layer.store.zero_grad();
      layer.conv.backward(wide_x.middleCols(1, 2), in, wide_dy.middleCols(3, 3),
                          wide_dx.middleCols(2, 2));
      for (std::size_t i = 0; i < once.size(); ++i) {
        CHECK(layer.store.grads()[i] == doctest::Approx(once[i]).epsilon(1e-12));
      }
      CHECK((wide_dx.middleCols(2, 2) - dx).cwiseAbs().maxCoeff() < 1e-12);
      CHECK(wide_dx.leftCols(2).cwiseAbs().maxCoeff() == 0);
      CHECK(wide_dx.col(4).cwiseAbs().maxCoeff() == 0);
    }
  }
}

TEST_CASE("Conv2d results do not depend on the number of threads") {
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  // 20 images of 9x11: enough work to run in parallel, 10 backward groups, several tiles.
  for (const Config& c : {Config{3, 1, 1}, Config{3, 2, 1}, Config{1, 1, 0}}) {
    CAPTURE(c.kernel);
    CAPTURE(c.stride);
    const ImageShape in{20, 9, 11, 8};
    const Batch<float> x = random_batch<float>(in.pixels(), 8, 14);
    std::vector<float> reference;
    for (const int threads : {1, 2, 3}) {
      CAPTURE(threads);
      omp_set_num_threads(threads);
      Layer<float> layer(8, 16, c, 15);
      const ImageShape out = layer.conv.output_shape(in);
      const Batch<float> dy = random_batch<float>(out.pixels(), 16, 16);
      Batch<float> y(out.pixels(), 16);
      Batch<float> dx(in.pixels(), 8);
      layer.conv.forward(x, in, y);
      layer.conv.backward(x, in, dy, dx);
      std::vector<float> result(y.data(), y.data() + y.size());
      result.insert(result.end(), dx.data(), dx.data() + dx.size());
      result.insert(result.end(), layer.store.grads().begin(), layer.store.grads().end());
      if (threads == 1) {
        reference = result;
      } else {
        CHECK(result == reference);
      }
    }
  }
  omp_set_num_threads(saved);
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("Conv2d accepts an empty batch") {
  Layer<double> layer(2, 3, Config{3, 2, 1}, 1);
  const ImageShape in{0, 5, 7, 2};
  CHECK(layer.conv.output_shape(in) == ImageShape{0, 3, 4, 3});
  const Batch<double> x(0, 2);
  Batch<double> y(0, 3);
  Batch<double> dx(0, 2);
  layer.conv.forward(x, in, y);
  layer.conv.backward(x, in, y, dx);
  for (const double g : layer.store.grads()) CHECK(g == 0.0);
}

TEST_CASE("Conv2d initialization is uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) and reproducible") {
  ddpm::nn::ParameterStore<double> store;
  Conv2d<double> conv(store, "conv", 16, 50, 5);  // fan_in 400: bound 0.05
  store.allocate();
  conv.bind(store);
  REQUIRE(store.blocks().size() == 2);
  CHECK(store.blocks()[0].name == "conv.weight");
  CHECK(store.slots()[0].rows == 400);
  CHECK(store.slots()[0].cols == 50);
  CHECK(store.blocks()[1].name == "conv.bias");
  CHECK(store.slots()[1].rows == 1);
  CHECK(store.slots()[1].cols == 50);
  CHECK(conv.padding() == 2);
  conv.initialize(ddpm::CounterRng(11), 4);
  const Batch<double> w1 = conv.weight();
  CHECK(w1.cwiseAbs().maxCoeff() <= 0.05);
  CHECK(w1.cwiseAbs().maxCoeff() > 0.0495);  // 20000 draws reach the bound's last 1%
  CHECK(conv.bias().cwiseAbs().maxCoeff() <= 0.05);
  conv.initialize(ddpm::CounterRng(11), 4);
  CHECK((Batch<double>(conv.weight()) - w1).cwiseAbs().maxCoeff() == 0.0);
  conv.initialize(ddpm::CounterRng(11), 5);
  CHECK((Batch<double>(conv.weight()) - w1).cwiseAbs().maxCoeff() > 0.0);
  conv.initialize(ddpm::CounterRng(11), 4, /*zero=*/true);
  CHECK(conv.weight().cwiseAbs().maxCoeff() == 0.0);
  CHECK(conv.bias().cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("Conv2d rejects bad arguments, naming the parameter") {
  ddpm::nn::ParameterStore<double> store;
  SUBCASE("constructor") {
    DDPM_CHECK_INVALID("c.kernel", Conv2d<double>(store, "c", 2, 3, 2));
    DDPM_CHECK_INVALID("c.kernel", Conv2d<double>(store, "c", 2, 3, 0));
    DDPM_CHECK_INVALID("c.stride", Conv2d<double>(store, "c", 2, 3, 3, 0));
    DDPM_CHECK_INVALID("c.stride", Conv2d<double>(store, "c", 2, 3, 3, 3));
    DDPM_CHECK_INVALID("c.padding", Conv2d<double>(store, "c", 2, 3, 3, 1, -2));
    DDPM_CHECK_INVALID("c.in_channels", Conv2d<double>(store, "c", 0, 3, 3));
    DDPM_CHECK_INVALID("c.out_channels", Conv2d<double>(store, "c", 2, 0, 3));
  }
  SUBCASE("shapes") {
    Conv2d<double> conv(store, "c", 2, 3, 3, 1, 0);
    store.allocate();
    conv.bind(store);
    const ImageShape in{2, 4, 5, 2};  // output 2x3
    const Batch<double> x = random_batch(in.pixels(), 2, 1);
    Batch<double> y(2 * 2 * 3, 3);
    Batch<double> dx(in.pixels(), 2);
    CHECK_NOTHROW(conv.forward(x, in, y));
    DDPM_CHECK_INVALID("in.channels", conv.output_shape(in.with_channels(3)));
    DDPM_CHECK_INVALID("in.channels", conv.forward(x, in.with_channels(3), y));
    DDPM_CHECK_INVALID("in.height", conv.output_shape(ImageShape{2, 2, 5, 2}));
    DDPM_CHECK_INVALID("in.width", conv.output_shape(ImageShape{2, 4, 0, 2}));
    const Batch<double> wrong_x = random_batch(in.pixels(), 3, 1);
    DDPM_CHECK_INVALID("x", conv.forward(wrong_x, in, y));
    const Batch<double> short_x = random_batch(in.pixels() - 1, 2, 1);
    DDPM_CHECK_INVALID("x", conv.forward(short_x, in, y));
    Batch<double> wrong_y(2 * 2 * 3, 4);
    DDPM_CHECK_INVALID("y", conv.forward(x, in, wrong_y));
    Batch<double> short_y(2 * 2 * 3 - 1, 3);
    DDPM_CHECK_INVALID("y", conv.forward(x, in, short_y));
    DDPM_CHECK_INVALID("dy", conv.backward(x, in, short_y));
    DDPM_CHECK_INVALID("dy", conv.backward(x, in, wrong_y, dx));
    Batch<double> wrong_dx(in.pixels(), 3);
    DDPM_CHECK_INVALID("dx", conv.backward(x, in, y, wrong_dx));
    CHECK_THROWS_WITH_AS(conv.forward(x, ImageShape{2, 2, 10, 2}, y),
                         doctest::Contains("invalid in.height = 2; allowed: >= 1 and >= kernel"),
                         ddpm::InvalidArgument);
  }
}

}  // namespace conv2d_test
