// SPDX-License-Identifier: MIT
// Luo & Hu's point-cloud diffusion model as one trainable denoiser: a PointNet encoder gives each
// shape a Gaussian code, the PointwiseNet decoder predicts every point's noise from its shape's
// code, and a KL term keeps the codes near N(0, I) so new shapes can be sampled.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/model_core.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/point_decoder.hpp"
#include "ddpm/nn/point_encoder.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// Shape and options of a PointCloudModel. The defaults are Luo & Hu's networks with a smaller
/// code (their latent_dim is 256) and their KL weight.
struct PointCloudModelConfig {
  Index latent_dim = 128;         ///< size of a shape's code z
  Index points_per_shape = 2048;  ///< N: rows [s N, (s + 1) N) of a batch are shape s
  std::vector<Index> decoder_widths = {128, 256, 512, 256, 128};  ///< 3 -> ... -> 3
  std::vector<Index> encoder_widths = {128, 128, 256, 512};       ///< per-point MLP, 3 -> ...
  std::vector<Index> head_widths = {256, 128};  ///< pooled -> ... -> 2 * latent_dim
  bool residual = true;                         ///< out = x_t + f(x_t), as the reference trains it
  double kl_weight = 1e-3;                      ///< weight of the KL term (see auxiliary_loss())
  std::uint64_t seed = 0;                       ///< parameter initialization seed
};

namespace detail {

/// The two networks of a PointCloudModel, bound to one store.
template <class Real>
struct PointCloudLayers {
  PointDecoder<Real> decoder;
  PointEncoder<Real> encoder;

  void bind(ParameterStore<Real>& store) noexcept {
    decoder.bind(store);
    encoder.bind(store);
  }
};

}  // namespace detail

/// eps_theta(x_t, t, z) of Luo & Hu 2021 with the Gaussian-code ("GaussianVAE") training: every
/// point of a shape is diffused independently, x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, and
/// the noise predictor is conditioned on the shape's code z and on beta_t of the original
/// schedule (the betas given at construction; t is the original timestep of each row, equal for
/// all rows of a shape).
///
/// Training (ddpm::train::Trainer with timestep_group = points_per_shape calls the hooks):
///   encode_clean(x0, rng, step)  encoder on the clean shapes, z = mu + sigma eps
///   predict(x_t, t, out)         eps_theta for every point, codes z of encode_clean
///   backward(grad_out)           decoder, then through z into the encoder, plus the KL term
///   auxiliary_loss()             kl_weight * mean over shapes of KL(N(mu, sigma^2) || N(0, I))
/// Sampling and reconstruction: set_codes(z) (z ~ N(0, I) for new shapes, or the mean of
/// encode() to reconstruct), then predict() in any sampler. S, the number of shapes, may differ
/// between calls. Parameters: "decoder.layer<k>.*" and "encoder.point<k>.*", "encoder.head<k>.*".
///
/// \code
///   nn::PointCloudModel<float> model(config, schedule.betas());
///   model.set_training(false);
///   model.set_codes(z);                       // S x latent_dim
///   Batch<float> x = sampler.sample(model, S * config.points_per_shape, 3, rng);
/// \endcode
template <class Real>
class PointCloudModel : public ModelCore<Real, detail::PointCloudLayers<Real>> {
  using Core = ModelCore<Real, detail::PointCloudLayers<Real>>;

 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;

  /// Coordinates per point.
  static constexpr Index kPointDim = 3;

  /// `betas`: the original schedule's betas (length T), for beta_t in the decoder's context.
  PointCloudModel(const PointCloudModelConfig& config, std::vector<double> betas)
      : Core([&](ParameterStore<Real>& store) { return build(validated(config), store); }),
        config_(config),
        betas_(std::move(betas)) {
    ddpm::detail::require(!betas_.empty(), "betas.size()", betas_.size(), ">= 1 (one per step)");
    for (std::size_t i = 0; i < betas_.size(); ++i) {
      ddpm::detail::require(betas_[i] > 0.0 && betas_[i] < 1.0, "betas[" + std::to_string(i) + "]",
                            betas_[i], "(0, 1)");
    }
    const CounterRng rng(config_.seed);
    const std::uint32_t next = layers().decoder.initialize(rng, 0);
    layers().encoder.initialize(rng, next);
  }

  /// The configuration it was built with.
  [[nodiscard]] const PointCloudModelConfig& config() const noexcept { return config_; }
  /// Features per point (3).
  [[nodiscard]] Index input_dim() const noexcept { return kPointDim; }
  /// Output features per point (3: the noise of x, y, z).
  [[nodiscard]] Index output_dim() const noexcept { return kPointDim; }
  /// The width of a shape's latent code.
  [[nodiscard]] Index latent_dim() const noexcept { return config_.latent_dim; }
  /// Points per training shape.
  [[nodiscard]] Index points_per_shape() const noexcept { return config_.points_per_shape; }
  /// T, the number of steps of the point diffusion's schedule.
  [[nodiscard]] int num_timesteps() const noexcept { return static_cast<int>(betas_.size()); }

  /// The codes predict() uses (S x latent_dim): from the last encode_clean() or set_codes().
  [[nodiscard]] Eigen::Map<const Batch<Real>> codes() const noexcept { return codes_.view(); }

  /// Training hook (called by the Trainer with the clean batch before predict()): encodes each
  /// shape of x0 (S * points_per_shape x 3) to (mu, log sigma^2) and draws its code z = mu +
  /// exp(log sigma^2 / 2) eps, eps ~ N(0, I) from rng on (stream::latent, shape s, step). In
  /// training mode keeps what backward() needs to reach the encoder.
  void encode_clean(const Batch<Real>& x0, const CounterRng& rng, std::uint32_t step) {
    check_points(x0, "x0");
    const Index shapes = x0.rows() / config_.points_per_shape;
    const Index latent = config_.latent_dim;
    const bool keep = this->training();
    layers().encoder.forward(x0, config_.points_per_shape, mean_, log_var_, keep);
    Eigen::Map<Batch<Real>> eps = eps_.resize(shapes, latent);
    Eigen::Map<Batch<Real>> sigma = sigma_.resize(shapes, latent);
    Eigen::Map<Batch<Real>> z = codes_.resize(shapes, latent);
    double kl = 0.0;
    for (Index s = 0; s < shapes; ++s) {
      rng.normals(stream::latent, static_cast<std::uint32_t>(s), step, eps.row(s).data(), latent);
      for (Index j = 0; j < latent; ++j) {
        const Real lv = log_var_(s, j);
        sigma(s, j) = std::exp(Real(0.5) * lv);
        z(s, j) = mean_(s, j) + sigma(s, j) * eps(s, j);
        const double mu = static_cast<double>(mean_(s, j));
        kl += 0.5 * (mu * mu + std::exp(static_cast<double>(lv)) - 1.0 - static_cast<double>(lv));
      }
    }
    auxiliary_loss_ = config_.kl_weight * kl / static_cast<double>(shapes);
    encoder_kept_ = keep;
    codes_from_encoder_ = true;
  }

  /// kl_weight * (1 / S) sum_s KL(N(mu_s, diag sigma_s^2) || N(0, I)) of the last encode_clean(),
  /// each KL summed over the latent dimensions (0 after set_codes()). Scale: the Trainer's
  /// diffusion loss is the mean over all S * N * 3 coordinates of the squared noise error (the
  /// mean over rows of each row's mean over 3 columns), which is Luo & Hu's F.mse_loss(...,
  /// 'mean'); their prior term is likewise a mean over shapes of a sum over latent dimensions
  /// (estimated there by one sample, here in closed form), so kl_weight means what theirs means
  /// (their default: 0.001). backward() adds this term's gradient itself: grad_out carries only
  /// the diffusion loss's.
  [[nodiscard]] double auxiliary_loss() const noexcept { return auxiliary_loss_; }

  /// Inference: the mean and log-variance (S x latent_dim each) of the code of each shape of x0.
  /// Does not disturb what encode_clean() kept for backward().
  void encode(const Batch<Real>& x0, Batch<Real>& mean, Batch<Real>& log_var) {
    check_points(x0, "x0");
    layers().encoder.forward(x0, config_.points_per_shape, mean, log_var, false);
  }

  /// Fixes the codes predict() uses for shape s = rows [s N, (s + 1) N): z is S x latent_dim.
  /// backward() then reaches the decoder only.
  void set_codes(const Batch<Real>& z) {
    ddpm::detail::require_shape(
        z.cols() == config_.latent_dim && z.rows() >= 1, "z", z.rows(), z.cols(), [&] {
          return "shapes x latent_dim = " + ddpm::detail::to_text(config_.latent_dim) + " columns";
        });
    codes_.resize(z.rows(), z.cols()) = z;
    codes_from_encoder_ = false;
    encoder_kept_ = false;
    auxiliary_loss_ = 0.0;
  }

  /// out = eps_theta(x_t, t, z) (resized to x_t's shape): x_t has S * points_per_shape rows for
  /// the S codes of the last encode_clean() or set_codes(); t, one original timestep per row,
  /// equal within each shape.
  void predict(ConstRef x_t, std::span<const int> t, Batch<Real>& out) {
    const Index rows = x_t.rows();
    const Index n = config_.points_per_shape;
    const Index shapes = codes_.rows();
    ddpm::detail::require_shape(x_t.cols() == kPointDim, "x_t", rows, x_t.cols(),
                                "3 columns (x, y, z of a point per row)");
    ddpm::detail::require(rows % n == 0, "x_t.rows()", rows, [&] {
      return "a multiple of points_per_shape = " + ddpm::detail::to_text(n);
    });
    ddpm::detail::require(shapes > 0 && rows == shapes * n, "x_t.rows()", rows, [&] {
      return shapes == 0
                 ? std::string("rows for codes: call encode_clean() or set_codes() first")
                 : ddpm::detail::to_text(shapes) +
                       " shapes (the codes of the last "
                       "encode_clean()/set_codes()) x " +
                       ddpm::detail::to_text(n) + " points = " + ddpm::detail::to_text(shapes * n);
    });
    ddpm::detail::require(static_cast<Index>(t.size()) == rows, "t.size()", t.size(),
                          [&] { return "x_t.rows() = " + ddpm::detail::to_text(rows); });
    const int steps = num_timesteps();
    beta_.resize(static_cast<std::size_t>(shapes));
    for (Index s = 0; s < shapes; ++s) {
      const int first = t[static_cast<std::size_t>(s * n)];
      for (Index r = s * n; r < (s + 1) * n; ++r) {
        const int value = t[static_cast<std::size_t>(r)];
        if (value != first) [[unlikely]] {
          throw InvalidArgument("t[" + std::to_string(r) + "]", std::to_string(value),
                                "t[" + std::to_string(s * n) + "] = " + std::to_string(first) +
                                    ": one timestep per shape (rows " + std::to_string(s * n) +
                                    ".." + std::to_string((s + 1) * n - 1) + " are shape " +
                                    std::to_string(s) + ")");
        }
      }
      ddpm::detail::require(first >= 0 && first < steps, "t", first, [&] {
        return "[0, " + ddpm::detail::to_text(steps) + ") (an original timestep)";
      });
      beta_[static_cast<std::size_t>(s)] =
          static_cast<Real>(betas_[static_cast<std::size_t>(first)]);
    }
    const bool keep = this->training();
    layers().decoder.forward(x_t, beta_, std::as_const(codes_).view(), n, out, keep);
    this->set_kept_batch(keep ? rows : -1);
  }

  /// Accumulates d loss / d parameters for the last predict(), given grad_out = d loss / d out:
  /// the decoder's, and when the codes came from encode_clean() (in training mode), the
  /// encoder's through z = mu + sigma eps plus the gradient of auxiliary_loss(). One backward
  /// per predict().
  void backward(ConstRef grad_out) { backward_impl(grad_out, nullptr); }

  /// As backward(grad_out), and also writes grad_x = d loss / d x_t.
  void backward(ConstRef grad_out, Batch<Real>& grad_x) { backward_impl(grad_out, &grad_x); }

  /// The networks, for inspection.
  [[nodiscard]] PointDecoder<Real>& decoder() noexcept { return layers().decoder; }
  /// \copydoc decoder()
  [[nodiscard]] PointEncoder<Real>& encoder() noexcept { return layers().encoder; }

 private:
  using Core::layers;

  static const PointCloudModelConfig& validated(const PointCloudModelConfig& c) {
    ddpm::detail::require(c.latent_dim >= 1, "latent_dim", c.latent_dim, ">= 1");
    ddpm::detail::require(c.points_per_shape >= 1, "points_per_shape", c.points_per_shape, ">= 1");
    ddpm::detail::require(std::isfinite(c.kl_weight) && c.kl_weight >= 0.0, "kl_weight",
                          c.kl_weight, "a finite value >= 0");
    return c;
  }

  static detail::PointCloudLayers<Real> build(const PointCloudModelConfig& c,
                                              ParameterStore<Real>& store) {
    return {
        PointDecoder<Real>(store, "decoder", kPointDim, c.decoder_widths, c.latent_dim, c.residual),
        PointEncoder<Real>(store, "encoder", kPointDim, c.encoder_widths, c.head_widths,
                           c.latent_dim)};
  }

  void check_points(const Batch<Real>& x0, std::string_view name) const {
    const Index n = config_.points_per_shape;
    ddpm::detail::require_shape(x0.cols() == kPointDim && x0.rows() > 0 && x0.rows() % n == 0, name,
                                x0.rows(), x0.cols(), [&] {
                                  return "S * points_per_shape = S * " + ddpm::detail::to_text(n) +
                                         " rows (S >= 1), 3 columns";
                                });
  }

  void backward_impl(const ConstRef& grad_out, Batch<Real>* grad_x) {
    const Index rows = this->kept_batch("nn::PointCloudModel", "predict()");
    ddpm::detail::require_shape(grad_out.rows() == rows && grad_out.cols() == kPointDim, "grad_out",
                                grad_out.rows(), grad_out.cols(), [&] {
                                  return "the shape of the last predict() output, " +
                                         ddpm::detail::to_text(rows) + "x3";
                                });
    this->set_kept_batch(-1);
    const Index shapes = codes_.rows();
    const Index latent = config_.latent_dim;
    Eigen::Map<Batch<Real>> d_z = grad_codes_.resize(shapes, latent);
    layers().decoder.backward(grad_out, d_z, grad_x);
    if (!(codes_from_encoder_ && encoder_kept_)) return;
    encoder_kept_ = false;
    // z = mu + sigma eps, sigma = exp(lv / 2); KL = 1/2 (mu^2 + e^lv - 1 - lv) per dimension,
    // scaled by kl_weight / S.
    const Real w = static_cast<Real>(config_.kl_weight / static_cast<double>(shapes));
    Eigen::Map<Batch<Real>> d_mean = grad_mean_.resize(shapes, latent);
    Eigen::Map<Batch<Real>> d_log_var = grad_log_var_.resize(shapes, latent);
    const Eigen::Map<const Batch<Real>> eps = std::as_const(eps_).view();
    const Eigen::Map<const Batch<Real>> sigma = std::as_const(sigma_).view();
    d_mean.array() = d_z.array() + w * mean_.array();
    d_log_var.array() = Real(0.5) * d_z.array() * sigma.array() * eps.array() +
                        Real(0.5) * w * (sigma.array().square() - Real(1));
    layers().encoder.backward(d_mean, d_log_var);
  }

  PointCloudModelConfig config_;
  std::vector<double> betas_;
  std::vector<Real> beta_;       // beta_t of each shape of the last predict()
  Workspace<Real> codes_;        // z, S x latent_dim
  Workspace<Real> eps_, sigma_;  // of the reparameterization
  Batch<Real> mean_, log_var_;   // of the last encode_clean()
  Workspace<Real> grad_codes_;   // d loss / d z
  Workspace<Real> grad_mean_, grad_log_var_;
  double auxiliary_loss_ = 0.0;
  bool codes_from_encoder_ = false;
  bool encoder_kept_ = false;  // the encoder holds encode_clean()'s state for backward()
};

}  // namespace ddpm::nn
