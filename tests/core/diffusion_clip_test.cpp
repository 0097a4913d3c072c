// SPDX-License-Identifier: MIT
// Clipping of x0^ is a property of the reverse process the samplers run, never of a training
// loss: a clipped x0^ has no gradient, so a clipping loss would starve the mean of its signal.
#include <doctest/doctest.h>

#include <vector>

#include "ddpm/diffusion.hpp"
#include "ddpm/schedule.hpp"
#include "support.hpp"

namespace diffusion_clip_test {

namespace {

using ddpm::Batch;
using ddpm::Index;

}  // namespace

TEST_CASE("Training losses never clip x0^, the reverse process does when asked") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(100);
  const Index n = 6, dim = 5;
  const Batch<double> x0 = ddpm::test::random_batch(n, dim, 1).cwiseMin(1.0).cwiseMax(-1.0);
  const Batch<double> noise = ddpm::test::random_batch(n, dim, 2);
  const std::vector<int> t{0, 1, 10, 50, 90, 99};
  struct Case {
    ddpm::LossKind loss;
    ddpm::VarianceKind variance;
    ddpm::ModelOutput output;
  };
  for (const Case c :
       {Case{ddpm::LossKind::kl, ddpm::VarianceKind::fixed_small, ddpm::ModelOutput::epsilon},
        Case{ddpm::LossKind::rescaled_kl, ddpm::VarianceKind::learned_range,
             ddpm::ModelOutput::epsilon},
        Case{ddpm::LossKind::hybrid, ddpm::VarianceKind::learned_range, ddpm::ModelOutput::v},
        Case{ddpm::LossKind::kl, ddpm::VarianceKind::learned, ddpm::ModelOutput::x0},
        Case{ddpm::LossKind::simple, ddpm::VarianceKind::fixed_large,
             ddpm::ModelOutput::epsilon}}) {
    CAPTURE(ddpm::to_string(c.loss));
    CAPTURE(ddpm::to_string(c.output));
    const ddpm::DiffusionOptions options{.output = c.output,
                                         .variance = c.variance,
                                         .loss = c.loss,
                                         .decoder = ddpm::Decoder::discretized};
    ddpm::DiffusionOptions clipping = options;
    clipping.clip_x0 = true;
    const ddpm::GaussianDiffusion<double> plain(schedule, options), clipped(schedule, clipping);
    Batch<double> x_t;
    plain.q_sample(x0, t, noise, x_t);
    // Outputs 3 sigma off the truth: many x0^ leave [-1, 1].
    const Batch<double> out = 3.0 * ddpm::test::random_batch(n, plain.model_output_dim(dim), 3);
    ddpm::TrainingLoss<double> a, b;
    Batch<double> grad_a, grad_b;
    plain.training_loss(out, x0, x_t, noise, t, a, grad_a);
    clipped.training_loss(out, x0, x_t, noise, t, b, grad_b);
    CHECK(a.mean == b.mean);
    CHECK((a.vlb - b.vlb).cwiseAbs().maxCoeff() == 0.0);
    CHECK((grad_a - grad_b).cwiseAbs().maxCoeff() == 0.0);

    // The reverse process of the clipping diffusion does clip, and at least one element here
    // needed it.
    ddpm::ReverseStep<double> unclipped_step, clipped_step;
    plain.p_mean_variance(out, x_t, t, unclipped_step);
    clipped.p_mean_variance(out, x_t, t, clipped_step);
    CHECK(unclipped_step.pred_x0.cwiseAbs().maxCoeff() > 1.0);
    CHECK(clipped_step.pred_x0.cwiseAbs().maxCoeff() <= 1.0);
  }
  // With a kl loss every mean output gets a gradient, also where x0^ leaves [-1, 1] (half of the
  // saturated background pixels of an image at any t had none).
  const ddpm::GaussianDiffusion<double> kl(
      schedule,
      {.loss = ddpm::LossKind::kl, .decoder = ddpm::Decoder::discretized, .clip_x0 = true});
  Batch<double> x_t;
  kl.q_sample(x0, t, noise, x_t);
  const Batch<double> out = 3.0 * ddpm::test::random_batch(n, dim, 3);
  ddpm::TrainingLoss<double> loss;
  Batch<double> grad;
  kl.training_loss(out, x0, x_t, noise, t, loss, grad);
  // Rows with t > 0 (the KL terms; row 0 is the decoder, whose floored bins can be flat).
  CHECK(grad.bottomRows(n - 1).cwiseAbs().minCoeff() > 0.0);
}

}  // namespace diffusion_clip_test
