// SPDX-License-Identifier: MIT
// Tests of nn::SpatialAttention: forward against a plain-loop per-image reference, the identity
// start of zero_proj, initialization, backward (all six parameter tensors and x) against central
// finite differences, thread-count independence and bad inputs.
#include "ddpm/nn/attention.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "ddpm/nn/linear.hpp"
#include "support.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace attention_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::nn::ImageShape;
using ddpm::nn::ParameterStore;
using ddpm::nn::SpatialAttention;

using ddpm::test::flat;
using ddpm::test::random_batch;

const ImageShape kShape{2, 3, 4, 8};

// The attention block in plain loops: GroupNorm, qkv, per (image, head) softmax(q k^T / sqrt(d)) v,
// proj, residual. Written from the definition, sharing no code with the layer.
Batch<double> reference(const Batch<double>& x, const ImageShape& s, Index heads, Index groups,
                        const SpatialAttention<double>& attn) {
  const Index c = s.channels;
  const Index plane = s.plane();
  const Index per_group = c / groups;
  const Index d = c / heads;
  Batch<double> h(x.rows(), c);
  for (Index n = 0; n < s.batch; ++n) {
    for (Index g = 0; g < groups; ++g) {
      double sum = 0.0;
      double sum_sq = 0.0;
      for (Index p = 0; p < plane; ++p) {
        for (Index k = g * per_group; k < (g + 1) * per_group; ++k) {
          sum += x(n * plane + p, k);
          sum_sq += x(n * plane + p, k) * x(n * plane + p, k);
        }
      }
      const double count = static_cast<double>(plane * per_group);
      const double mean = sum / count;
      const double var = sum_sq / count - mean * mean;
      for (Index p = 0; p < plane; ++p) {
        for (Index k = g * per_group; k < (g + 1) * per_group; ++k) {
          h(n * plane + p, k) =
              (x(n * plane + p, k) - mean) / std::sqrt(var + 1e-5) * attn.norm().weight()(k) +
              attn.norm().bias()(k);
        }
      }
    }
  }
  Batch<double> qkv(x.rows(), 3 * c);
  for (Index r = 0; r < x.rows(); ++r) {
    for (Index j = 0; j < 3 * c; ++j) {
      double z = attn.qkv().bias()(j);
      for (Index k = 0; k < c; ++k) z += h(r, k) * attn.qkv().weight()(k, j);
      qkv(r, j) = z;
    }
  }
  Batch<double> o(x.rows(), c);
  std::vector<double> a(static_cast<std::size_t>(plane));
  for (Index n = 0; n < s.batch; ++n) {
    for (Index head = 0; head < heads; ++head) {
      for (Index i = 0; i < plane; ++i) {
        double total = 0.0;
        for (Index k = 0; k < plane; ++k) {
          double dot = 0.0;
          for (Index e = 0; e < d; ++e) {
            dot += qkv(n * plane + i, head * d + e) * qkv(n * plane + k, c + head * d + e);
          }
          a[static_cast<std::size_t>(k)] = std::exp(dot / std::sqrt(static_cast<double>(d)));
          total += a[static_cast<std::size_t>(k)];
        }
        for (Index e = 0; e < d; ++e) {
          double value = 0.0;
          for (Index k = 0; k < plane; ++k) {
            value +=
                a[static_cast<std::size_t>(k)] / total * qkv(n * plane + k, 2 * c + head * d + e);
          }
          o(n * plane + i, head * d + e) = value;
        }
      }
    }
  }
  Batch<double> y(x.rows(), c);
  for (Index r = 0; r < x.rows(); ++r) {
    for (Index j = 0; j < c; ++j) {
      double z = attn.proj().bias()(j) + x(r, j);
      for (Index k = 0; k < c; ++k) z += o(r, k) * attn.proj().weight()(k, j);
      y(r, j) = z;
    }
  }
  return y;
}

// A bound block with random (non-default) norm parameters and a non-zero proj.
template <class Real>
struct Fixture {
  Fixture(Index channels, Index heads, Index groups) {
    attn = SpatialAttention<Real>(store, "attn", channels, heads, groups);
    store.allocate();
    attn.bind(store);
    attn.initialize(ddpm::CounterRng(21), 3);
    attn.norm().weight() =
        (1.0 + 0.3 * random_batch(1, channels, 30).array()).matrix().cast<Real>();
    attn.norm().bias() = (0.3 * random_batch(1, channels, 31)).cast<Real>();
  }
  ParameterStore<Real> store;
  SpatialAttention<Real> attn;
};

// Relative error allowed between analytic and central-difference gradients (h = 1e-5 in double:
// truncation ~1e-10 and round-off ~1e-10 against a 1e-3 floor give ~1e-7; a wrong gradient is
// O(1)).
constexpr double kGradTol = 1e-5;
constexpr double kStep = 1e-5;

}  // namespace

TEST_CASE("SpatialAttention forward matches a plain-loop per-image reference") {
  for (const Index heads : {1, 2}) {
    for (const Index groups : {2, 4}) {
      CAPTURE(heads);
      CAPTURE(groups);
      Fixture<double> f(8, heads, groups);
      const Batch<double> x = random_batch(kShape.pixels(), 8, 1);
      Batch<double> y(24, 8);
      f.attn.forward(x, kShape, y);
      const Batch<double> expected = reference(x, kShape, heads, groups, f.attn);
      CHECK((y - expected).cwiseAbs().maxCoeff() < 1e-12);

      SUBCASE("without keep_for_backward the values are the same") {
        Batch<double> y2(24, 8);
        f.attn.forward(x, kShape, y2, false);
        CHECK((y2 - y).cwiseAbs().maxCoeff() == 0.0);
      }
    }
  }
}

TEST_CASE("SpatialAttention softmax is stable for large scores") {
  // Logits of order 1e3 overflow exp() unless the row maximum is subtracted first.
  Fixture<double> f(8, 1, 2);
  f.attn.qkv().weight() *= 300.0;
  const Batch<double> x = random_batch(kShape.pixels(), 8, 2);
  Batch<double> y(24, 8);
  f.attn.forward(x, kShape, y);
  CHECK(y.allFinite());
}

TEST_CASE("SpatialAttention initialization and the zero_proj identity start") {
  ParameterStore<double> store;
  SpatialAttention<double> attn(store, "mid.attn", 8, 2, 4);
  ddpm::nn::Linear<double> qkv_like(store, "qkv_like", 8, 24);
  ddpm::nn::Linear<double> proj_like(store, "proj_like", 8, 8);
  store.allocate();
  attn.bind(store);
  qkv_like.bind(store);
  proj_like.bind(store);
  const std::vector<std::string> expected_names = {"mid.attn.norm.weight", "mid.attn.norm.bias",
                                                   "mid.attn.qkv.weight",  "mid.attn.qkv.bias",
                                                   "mid.attn.proj.weight", "mid.attn.proj.bias"};
  for (std::size_t i = 0; i < expected_names.size(); ++i) {
    CHECK(store.blocks()[i].name == expected_names[i]);
  }
  CHECK(store.slots()[2].rows == 8);
  CHECK(store.slots()[2].cols == 24);

  const ddpm::CounterRng rng(5);
  attn.initialize(rng, 10);
  qkv_like.initialize(rng, 10);
  proj_like.initialize(rng, 11);
  CHECK(attn.norm().weight().isOnes());
  CHECK(attn.norm().bias().isZero());
  CHECK(attn.qkv().weight() == qkv_like.weight());
  CHECK(attn.qkv().bias() == qkv_like.bias());
  CHECK(attn.proj().weight() == proj_like.weight());
  CHECK(attn.proj().bias() == proj_like.bias());

  attn.initialize(rng, 10, /*zero_proj=*/true);
  CHECK(attn.qkv().weight() == qkv_like.weight());
  CHECK(attn.proj().weight().isZero());
  CHECK(attn.proj().bias().isZero());
  const Batch<double> x = random_batch(kShape.pixels(), 8, 3);
  Batch<double> y(24, 8);
  attn.forward(x, kShape, y);
  CHECK(y == x);
}

TEST_CASE("SpatialAttention backward matches central finite differences") {
  for (const Index heads : {1, 2}) {
    for (const Index groups : {2, 4}) {
      CAPTURE(heads);
      CAPTURE(groups);
      Fixture<double> f(8, heads, groups);
      Batch<double> x = random_batch(kShape.pixels(), 8, 4);
      const Batch<double> weights = random_batch(24, 8, 5);  // loss = sum(weights .* y)
      Batch<double> y(24, 8);
      auto loss = [&] {
        f.attn.forward(x, kShape, y, false);
        return (y.array() * weights.array()).sum();
      };
      f.store.zero_grad();
      f.attn.forward(x, kShape, y);
      Batch<double> dx(24, 8);
      f.attn.backward(x, kShape, weights, dx);

      std::vector<double> numeric(static_cast<std::size_t>(f.store.size()));
      ddpm::nn::numeric_gradient(loss, f.store.values(), std::span<double>(numeric), kStep);
      REQUIRE(f.store.blocks().size() == 6);
      for (std::size_t b = 0; b < 6; ++b) {
        const auto& slot = f.store.slots()[b];
        CAPTURE(f.store.blocks()[b].name);
        const std::span<const double> analytic = f.store.blocks()[b].grad;
        const std::span<const double> expected(numeric.data() + slot.offset,
                                               static_cast<std::size_t>(slot.rows * slot.cols));
        CHECK(ddpm::nn::max_gradient_error<double>(analytic, expected) < kGradTol);
      }

      Batch<double> numeric_dx(24, 8);
      ddpm::nn::numeric_gradient(loss, flat(x), flat(numeric_dx), kStep);
      CHECK(ddpm::nn::max_gradient_error<double>(flat(dx), flat(numeric_dx)) < kGradTol);
    }
  }
}

TEST_CASE("SpatialAttention backward accumulates, adds into dx, and may write dx over dy") {
  Fixture<double> f(8, 2, 4);
  const Batch<double> x = random_batch(24, 8, 6);
  const Batch<double> dy = random_batch(24, 8, 7);
  Batch<double> y(24, 8);
  f.attn.forward(x, kShape, y);
  Batch<double> dx(24, 8);
  f.attn.backward(x, kShape, dy, dx);
  const std::vector<double> once(f.store.grads().begin(), f.store.grads().end());

  SUBCASE("a second backward doubles the parameter gradients") {
    f.attn.backward(x, kShape, dy, dx);
    for (std::size_t i = 0; i < once.size(); ++i) {
      CHECK(f.store.grads()[i] == doctest::Approx(2 * once[i]).epsilon(1e-12));
    }
  }
  SUBCASE("accumulate_dx adds to what dx holds") {
    const Batch<double> base = random_batch(24, 8, 8);
    Batch<double> dx2 = base;
    f.attn.backward(x, kShape, dy, dx2, /*accumulate_dx=*/true);
    CHECK((dx2 - base - dx).cwiseAbs().maxCoeff() < 1e-12);
  }
  SUBCASE("dx may be the matrix dy") {
    Batch<double> in_place = dy;
    f.attn.backward(x, kShape, in_place, in_place);
    CHECK((in_place - dx).cwiseAbs().maxCoeff() < 1e-12);
  }
}

#ifdef _OPENMP
TEST_CASE("SpatialAttention results do not depend on the thread count") {
  const ImageShape s{5, 7, 7, 32};
  const Batch<float> x = random_batch<float>(s.pixels(), 32, 9);
  const Batch<float> dy = random_batch<float>(s.pixels(), 32, 10);
  auto run = [&](int threads, bool keep, Batch<float>& y, Batch<float>& dx,
                 std::vector<float>& grads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    Fixture<float> f(32, 2, 8);
    y.resize(s.pixels(), 32);
    dx.resize(s.pixels(), 32);
    f.attn.forward(x, s, y, keep);
    if (keep) {
      f.attn.backward(x, s, dy, dx);
      grads.assign(f.store.grads().begin(), f.store.grads().end());
    }
    omp_set_num_threads(saved);
  };
  for (const bool keep : {true, false}) {
    CAPTURE(keep);
    Batch<float> y1, y2, dx1, dx2;
    std::vector<float> g1, g2;
    run(1, keep, y1, dx1, g1);
    run(2, keep, y2, dx2, g2);
    CHECK(y1 == y2);
    if (keep) {
      CHECK(dx1 == dx2);
      CHECK(g1 == g2);
    }
  }
}
#endif

TEST_CASE("SpatialAttention rejects bad arguments, naming them") {
  ParameterStore<double> store;
  DDPM_CHECK_INVALID("attn.heads", SpatialAttention<double>(store, "attn", 8, 3, 2));
  DDPM_CHECK_INVALID("attn.heads", SpatialAttention<double>(store, "attn", 8, 0, 2));
  DDPM_CHECK_INVALID("attn.groups", SpatialAttention<double>(store, "attn", 8, 2, 3));
  DDPM_CHECK_INVALID("attn.channels", SpatialAttention<double>(store, "attn", 0, 1, 1));
  CHECK(store.slots().empty());  // a rejected block registers nothing

  SpatialAttention<double> attn(store, "attn", 8, 2, 4);
  store.allocate();
  attn.bind(store);
  attn.initialize(ddpm::CounterRng(1), 0);
  Batch<double> x = random_batch(24, 8, 11);
  Batch<double> y(24, 8);
  const Batch<double> wrong_cols = random_batch(24, 6, 11);
  DDPM_CHECK_INVALID("x", attn.forward(wrong_cols, kShape, y));
  DDPM_CHECK_INVALID("s", attn.forward(x, ImageShape{2, 3, 4, 4}, y));
  DDPM_CHECK_INVALID("x", attn.forward(x, ImageShape{3, 3, 4, 8}, y));
  Batch<double> bad_y(24, 7);
  DDPM_CHECK_INVALID("y", attn.forward(x, kShape, bad_y));
  DDPM_CHECK_INVALID("y", attn.forward(x, kShape, x));  // x is needed as the residual

  Batch<double> dx(24, 8);
  attn.forward(x, kShape, y, false);
  CHECK_THROWS_AS(attn.backward(x, kShape, y, dx), std::logic_error);
  attn.forward(x, kShape, y);
  DDPM_CHECK_INVALID("dy", attn.backward(x, kShape, bad_y, dx));
  DDPM_CHECK_INVALID("dx", attn.backward(x, kShape, y, bad_y));
  CHECK_THROWS_AS(attn.backward(x, ImageShape{2, 4, 3, 8}, y, dx), std::logic_error);
}

}  // namespace attention_test
