// SPDX-License-Identifier: MIT
// The variational bound of data under a model with the KL terms at every k-th timestep (a
// Riemann-sum estimate of the full sum, k = 1 exact), with its parts and standard error, and its
// record in a metrics file.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/io/json.hpp"

namespace ddpm::eval {

/// Means over the rows of x0 (in the diffusion's unit: bits/dim for the discretized decoder).
struct BoundEstimate {
  Index n = 0;       ///< rows of x0 averaged over
  int stride = 1;    ///< KL terms taken every stride steps
  std::string unit;  ///< "bits/dim" or "nats/dim"
  ///@{
  /// The bound (total), its standard error over the rows, and its terms: decoder L_0, the strided
  /// KL sum and prior L_T.
  double total = 0, standard_error = 0, decoder = 0, kl = 0, prior = 0;
  ///@}
};

/// The bound of each row of x0: the decoder term L_0, the KL terms at t = stride, 2 stride, ...
/// each multiplied by `stride` (the terms vary slowly in t), and the prior term L_T. The noise of
/// step t is stream forward_noise of `rng` at (row, t). `on_step(done, total)` follows each step.
template <class Real, class Model, class OnStep>
BoundEstimate strided_bound(const GaussianDiffusion<Real>& diffusion, Model& model,
                            const Batch<Real>& x0, int stride, const CounterRng& rng,
                            OnStep&& on_step) {
  ddpm::detail::require(stride >= 1, "stride", stride, ">= 1");
  const Index n = x0.rows();
  Eigen::VectorXd decoder = Eigen::VectorXd::Zero(n), kl = Eigen::VectorXd::Zero(n);
  Batch<Real> noise(n, x0.cols()), x_t, out;
  Vector<Real> terms, prior;
  std::vector<int> steps;
  for (int s = 0; s < diffusion.num_timesteps(); s += stride) steps.push_back(s);
  ddpm::detail::InferenceMode<Model> inference(model);
  int done = 0;
  for (const int s : steps) {
    const int timestep = diffusion.schedule().timestep(s);
    const std::vector<int> ts(static_cast<std::size_t>(n), timestep);
    rng.fill_normal(noise, stream::forward_noise, 0, static_cast<std::uint32_t>(timestep));
    diffusion.q_sample(x0, ts, noise, x_t);
    model.predict(x_t, ts, out);
    diffusion.bound_terms(out, x0, x_t, ts, terms);
    if (s == 0) {
      decoder += terms.template cast<double>();
    } else {
      kl += static_cast<double>(stride) * terms.template cast<double>();
    }
    on_step(++done, static_cast<int>(steps.size()));
  }
  diffusion.prior_term(x0, prior);
  const Eigen::VectorXd total = decoder + kl + prior.template cast<double>();
  BoundEstimate b;
  b.n = n;
  b.stride = stride;
  b.unit = diffusion.options().decoder == Decoder::discretized ? "bits/dim" : "nats/dim";
  b.total = total.mean();
  b.decoder = decoder.mean();
  b.kl = kl.mean();
  b.prior = prior.template cast<double>().mean();
  b.standard_error = n > 1 ? std::sqrt((total.array() - b.total).square().sum() /
                                       static_cast<double>(n - 1) / static_cast<double>(n))
                           : 0.0;
  return b;
}

/// The estimate as a metrics-file object: n, stride, total, standard_error, decoder_L0, kl_terms,
/// prior_LT (in that order; the unit is the caller's to state).
[[nodiscard]] inline io::JsonObject to_json(const BoundEstimate& b) {
  io::JsonObject json;
  json.add("n", b.n)
      .add("stride", b.stride)
      .add("total", b.total)
      .add("standard_error", b.standard_error)
      .add("decoder_L0", b.decoder)
      .add("kl_terms", b.kl)
      .add("prior_LT", b.prior);
  return json;
}

}  // namespace ddpm::eval
