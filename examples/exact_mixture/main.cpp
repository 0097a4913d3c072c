// SPDX-License-Identifier: MIT
// ddpm-exact-mixture: samples the 8gaussians mixture with its exact (analytic) denoiser, so every
// sampler can be seen working without any training. Writes samples.csv and pictures; `likelihood`
// measures the probability-flow ODE NLL against the exact one.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "../common_dist.hpp"
#include "../common_options.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/ode_likelihood.hpp"
#include "ddpm/io/csv.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/viz/strips.hpp"

namespace {

struct Options {
  ddpm::SamplerSpec sampler;  // ddpm over all T steps by default
  int num_timesteps = 1000;
  std::string schedule = "linear";
  int n = 5000;
  std::uint64_t seed = 0;
  std::string out = "out/exact_mixture";
};

// Draws n points from the mixture directly (component, then Gaussian), the ground truth picture.
ddpm::Batch<double> draw_mixture(const ddpm::GaussianMixture& m, ddpm::Index n,
                                 std::uint64_t seed) {
  const ddpm::CounterRng rng(seed);
  ddpm::Batch<double> x(n, m.dim());
  for (ddpm::Index i = 0; i < n; ++i) {
    const auto sample = static_cast<std::uint32_t>(i);
    const auto k = static_cast<ddpm::Index>(
        rng.uniform_int(ddpm::stream::data, sample, 0, static_cast<std::uint64_t>(m.components())));
    rng.normals(ddpm::stream::data, sample, 1, x.row(i).data(), m.dim());
    x.row(i) = m.means.row(k) + m.stds[static_cast<std::size_t>(k)] * x.row(i);
  }
  return x;
}

// ---- likelihood: the probability-flow ODE NLL of fresh mixture points beside the exact NLL
// --------

struct LikelihoodOptions {
  int n = 1000;
  std::uint64_t seed = 0;
  int num_timesteps = 1000;
  std::string schedule = "linear";
  double tolerance = 1e-5;  // Dormand-Prince rtol = atol
  std::string out = "out/exact_mixture";
};

int likelihood(const LikelihoodOptions& options) {
  ddpm_examples::check_output_folder(options.out);  // before any work
  const ddpm::NoiseSchedule schedule = options.schedule == "cosine"
                                           ? ddpm::NoiseSchedule::cosine(options.num_timesteps)
                                           : ddpm::NoiseSchedule::linear(options.num_timesteps);
  const ddpm::GaussianMixture mixture = ddpm::eight_gaussians_mixture();
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule);
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const ddpm::Batch<double> x = draw_mixture(mixture, options.n, options.seed);
  ddpm::OdeLikelihoodOptions ode;
  ode.rtol = ode.atol = options.tolerance;
  // The N(0, I) prior a trained model would get; the exact prior isolates the solver's error.
  const ddpm::OdeLikelihood nll =
      ddpm::ode_likelihood(model, diffusion, x, ddpm::CounterRng(options.seed), ode);
  ode.log_prior = ddpm::mixture_prior(mixture, nll.s_max);
  const ddpm::OdeLikelihood exact_prior =
      ddpm::ode_likelihood(model, diffusion, x, ddpm::CounterRng(options.seed), ode);
  double exact = 0.0;
  ddpm::Batch<double> table(x.rows(), 3);
  for (ddpm::Index i = 0; i < x.rows(); ++i) {
    exact -=
        ddpm::mixture_log_density(mixture, std::span<const double>(x.row(i).data(), 2), nll.s_min);
    table(i, 0) = x(i, 0);
    table(i, 1) = x(i, 1);
    table(i, 2) = nll.nll[static_cast<std::size_t>(i)];
  }
  exact /= 2.0 * static_cast<double>(x.rows());
  const ddpm::VariationalBound<double> bound =
      diffusion.variational_bound(model, x, ddpm::CounterRng(options.seed + 1));
  const std::filesystem::path out(options.out);
  std::filesystem::create_directories(out);
  ddpm::io::write_csv(out / "likelihood.csv", table, {"x", "y", "nll_ode"});
  std::printf(
      "%d points, nats/dim: ODE NLL %.5f (N(0, I) prior), %.5f (exact prior); exact NLL %.5f "
      "(level s_min = %.4g); variational bound %.5f\n",
      options.n, nll.mean_nll_per_dim(), exact_prior.mean_nll_per_dim(), exact, nll.s_min,
      bound.total.mean());
  std::printf("NFE %.1f per point (Dormand-Prince 5(4), rtol = atol = %g, exact divergence)\n",
              nll.mean_evaluations(), options.tolerance);
  std::printf("wrote likelihood.csv (x, y, nll_ode in nats per point) in %s\n",
              out.string().c_str());
  return 0;
}

// ---- inpaint: RePaint with the x coordinate known, against the exact conditional p(y | x) -------

struct InpaintOptions {
  double x = 1.0;  // the known coordinate of every sample
  int n = 2000;
  int steps = 250;  // kept steps of the T = 1000 linear schedule
  int jump = 10;
  int resample = 10;
  std::uint64_t seed = 0;
  std::string out = "out/exact_mixture";
};

int inpaint(const InpaintOptions& options) {
  ddpm_examples::check_output_folder(options.out);  // before any work
  const ddpm::NoiseSchedule full = ddpm::NoiseSchedule::linear(1000);
  const ddpm::GaussianMixture mixture = ddpm::eight_gaussians_mixture();
  ddpm::GaussianMixtureDenoiser<double> model(mixture, full);
  ddpm::RepaintSampler<double> repaint(
      ddpm::GaussianDiffusion<double>(full.respaced("evenly " + std::to_string(options.steps))),
      options.jump, options.resample);
  ddpm::Batch<double> known = ddpm::Batch<double>::Zero(options.n, 2);
  known.col(0).setConstant(options.x);
  ddpm::Batch<double> mask = ddpm::Batch<double>::Zero(options.n, 2);
  mask.col(0).setOnes();
  std::printf("RePaint, %d kept steps, jump %d, resample %d: %d network evaluations\n",
              options.steps, options.jump, options.resample, repaint.network_evaluations());
  ddpm::io::ProgressBar progress(repaint.network_evaluations(), "repaint");
  const ddpm::Batch<double> samples =
      repaint.inpaint(model, known, mask, ddpm::CounterRng(options.seed), 0,
                      [&](const ddpm::SamplerProgress<double>& p) { progress.update(p.done); });
  progress.finish();
  // p(y | x) of an isotropic mixture: weights pi_k N(x; m_kx, s_k^2), components N(m_ky, s_k^2).
  std::vector<double> weights(static_cast<std::size_t>(mixture.components()));
  double total = 0.0;
  for (ddpm::Index k = 0; k < mixture.components(); ++k) {
    const double s = mixture.stds[static_cast<std::size_t>(k)];
    const double d = (options.x - mixture.means(k, 0)) / s;
    weights[static_cast<std::size_t>(k)] =
        mixture.weights[static_cast<std::size_t>(k)] * std::exp(-0.5 * d * d) / s;
    total += weights[static_cast<std::size_t>(k)];
  }
  double mean = 0.0, second = 0.0;
  for (ddpm::Index k = 0; k < mixture.components(); ++k) {
    const double w = weights[static_cast<std::size_t>(k)] / total;
    const double s = mixture.stds[static_cast<std::size_t>(k)];
    mean += w * mixture.means(k, 1);
    second += w * (s * s + mixture.means(k, 1) * mixture.means(k, 1));
  }
  const double y_mean = samples.col(1).mean();
  const double y_std = std::sqrt((samples.col(1).array() - y_mean).square().mean());
  const std::filesystem::path out(options.out);
  std::filesystem::create_directories(out);
  ddpm::io::write_csv(out / "inpaint.csv", samples, {"x", "y"});
  std::printf("y given x = %g: mean %.4f, std %.4f; exact conditional mean %.4f, std %.4f\n",
              options.x, y_mean, y_std, mean, std::sqrt(second - mean * mean));
  std::printf("wrote inpaint.csv in %s\n", out.string().c_str());
  return 0;
}

int run(const Options& options) {
  ddpm_examples::check_output_folder(options.out);  // before any work
  const ddpm::NoiseSchedule full = options.schedule == "cosine"
                                       ? ddpm::NoiseSchedule::cosine(options.num_timesteps)
                                       : ddpm::NoiseSchedule::linear(options.num_timesteps);
  const int T = options.num_timesteps;
  const int steps = options.sampler.step_count(T);
  ddpm::detail::require(
      steps >= 1 && (steps <= T || !ddpm::steps_on_schedule(options.sampler.kind)), "--steps",
      steps, "1.." + std::to_string(T) + " for ddpm and ddim (0: the sampler's default)");
  const ddpm::GaussianMixture mixture = ddpm::eight_gaussians_mixture();
  // Exact at every level, also between the schedule's steps (Karras grids).
  ddpm::GaussianMixtureDenoiser<double> model(mixture, full);
  const ddpm::GaussianDiffusion<double> diffusion(full);
  const ddpm::CounterRng rng(options.seed);

  ddpm::viz::ReverseStripRecorder<double> strip(ddpm::sampling_timesteps(options.sampler, full), T,
                                                ddpm::io::Frame{});
  const std::string sampler(ddpm::to_string(options.sampler.kind));
  std::printf("%s, %s grid, %d steps: %d network evaluations\n", sampler.c_str(),
              std::string(ddpm::to_string(options.sampler.grid_kind())).c_str(), steps,
              options.sampler.network_evaluations(T));
  ddpm::io::ProgressBar progress(steps, sampler + " sampling");
  const auto on_step = [&](const ddpm::SamplerProgress<double>& p) {
    progress.update(p.done);
    strip(p);
  };
  const ddpm::Batch<double> samples =
      ddpm::sample(options.sampler, diffusion, model, options.n, 2, rng, 0, on_step);
  progress.finish();

  const std::filesystem::path out(options.out);
  std::filesystem::create_directories(out);
  ddpm::io::write_csv(out / "samples.csv", samples, {"x", "y"});
  const std::string title = sampler + ", " + std::to_string(steps) + " steps";
  ddpm::io::scatter_png(out / "samples.png", samples, title);
  const std::vector<ddpm::io::Panel> compare = {
      ddpm::io::make_panel(draw_mixture(mixture, options.n, options.seed + 1),
                           "data (exact draws)"),
      ddpm::io::make_panel(samples, title)};
  ddpm::io::write_png(out / "compare.png", ddpm::io::render_panels(compare, 2));
  ddpm::io::write_png(out / "reverse.png", ddpm::io::render_strip(strip.panels()));

  const Eigen::RowVector2d mean = samples.colwise().mean();
  const double variance = (samples.rowwise() - mean).array().square().mean();
  const double true_variance = (16.0 * 0.5 + 0.25) / (1.414 * 1.414);
  std::printf("samples: %d, mean (%.3f, %.3f) [exact 0, 0], per-axis variance %.3f [exact %.3f]\n",
              options.n, mean(0), mean(1), variance, true_variance);
  std::printf("wrote %s, samples.png, compare.png, reverse.png in %s\n", "samples.csv",
              out.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (!ddpm_examples::started_as_one_process("ddpm-exact-mixture")) return 1;
  Options options;
  CLI::App app{"Sample the 8gaussians mixture with its exact denoiser (no training needed)."};
  ddpm_examples::add_choice(app, "--sampler", options.sampler.kind,
                            "the sampler (ddpm: ancestral; euler, heun, dpm++, unipc: grid "
                            "solvers)");
  app.add_option_function<std::string>(
         "--grid",
         [&options](const std::string& text) {
           options.sampler.grid = ddpm::parse_enum<ddpm::GridKind>(text);
         },
         "noise-level grid: " + ddpm::enum_choices<ddpm::GridKind>() +
             " (default: evenly for ddpm/ddim, exponential for the solvers)")
      ->check(CLI::IsMember(ddpm::enum_names<ddpm::GridKind>()));
  app.add_option("--T", options.num_timesteps, "diffusion steps T of the schedule")
      ->check(ddpm_examples::integer_range(1, 100000))
      ->capture_default_str();
  app.add_option("--steps", options.sampler.steps,
                 "sampling steps, one network evaluation each (Heun: two); 0: the sampler's "
                 "default (T for ddpm, 50 for ddim/euler/euler-a, 25 for heun, 20 for "
                 "dpm++/unipc)")
      ->check(ddpm_examples::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--schedule", options.schedule, "linear or cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  app.add_option_function<double>(
         "--eta", [&options](double value) { options.sampler.eta = value; },
         "noise: DDIM eta (default 0), euler-a and dpm++2m-sde (default 1)")
      ->check(ddpm_examples::non_negative());
  app.add_option("--s-churn", options.sampler.solver.s_churn, "euler/heun churn (0: the ODE)")
      ->check(ddpm_examples::non_negative());
  app.add_option("--n", options.n, "number of samples")
      ->check(ddpm_examples::integer_range(1, 10000000))
      ->capture_default_str();
  app.add_option("--seed", options.seed, "random seed")
      ->check(ddpm_examples::seed_value())
      ->capture_default_str();
  app.add_option("--out", options.out, "output folder")->capture_default_str();

  LikelihoodOptions likelihood_options;
  CLI::App* likelihood_cmd = app.add_subcommand(
      "likelihood",
      "probability-flow ODE NLL of fresh mixture points beside the exact NLL and the variational "
      "bound; writes likelihood.csv (x, y, nll_ode in nats per point)");
  likelihood_cmd->add_option("--n", likelihood_options.n, "number of points")
      ->check(ddpm_examples::integer_range(1, 10000000))
      ->capture_default_str();
  likelihood_cmd->add_option("--seed", likelihood_options.seed, "random seed")
      ->check(ddpm_examples::seed_value())
      ->capture_default_str();
  likelihood_cmd->add_option("--T", likelihood_options.num_timesteps, "diffusion steps T")
      ->check(ddpm_examples::integer_range(2, 100000))
      ->capture_default_str();
  likelihood_cmd->add_option("--schedule", likelihood_options.schedule, "linear or cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  likelihood_cmd
      ->add_option("--tolerance", likelihood_options.tolerance,
                   "Dormand-Prince rtol = atol of the ODE solve")
      ->check(ddpm_examples::positive())
      ->capture_default_str();
  likelihood_cmd->add_option("--out", likelihood_options.out, "output folder")
      ->capture_default_str();
  InpaintOptions inpaint_options;
  CLI::App* inpaint_cmd = app.add_subcommand(
      "inpaint",
      "RePaint with the x coordinate known: samples y | x, beside the exact conditional's mean "
      "and std; writes inpaint.csv");
  inpaint_cmd->add_option("--x", inpaint_options.x, "the known x of every sample")
      ->capture_default_str();
  inpaint_cmd->add_option("--n", inpaint_options.n, "number of samples")
      ->check(ddpm_examples::integer_range(1, 10000000))
      ->capture_default_str();
  inpaint_cmd->add_option("--steps", inpaint_options.steps, "kept steps of the T = 1000 schedule")
      ->check(ddpm_examples::integer_range(1, 1000))
      ->capture_default_str();
  inpaint_cmd->add_option("--jump", inpaint_options.jump, "RePaint jump length j")
      ->check(ddpm_examples::integer_at_least(1))
      ->capture_default_str();
  inpaint_cmd->add_option("--resample", inpaint_options.resample, "RePaint resampling count U")
      ->check(ddpm_examples::integer_at_least(1))
      ->capture_default_str();
  inpaint_cmd->add_option("--seed", inpaint_options.seed, "random seed")
      ->check(ddpm_examples::seed_value())
      ->capture_default_str();
  inpaint_cmd->add_option("--out", inpaint_options.out, "output folder")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (*likelihood_cmd) return likelihood(likelihood_options);
    if (*inpaint_cmd) return inpaint(inpaint_options);
    return run(options);
  } catch (const std::exception& e) {
    std::cerr << "ddpm-exact-mixture: " << e.what() << "\n";
    return 1;
  }
}
