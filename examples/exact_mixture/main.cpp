// SPDX-License-Identifier: MIT
// ddpm-exact-mixture: samples the 8gaussians mixture with its exact (analytic) denoiser, so every
// sampler can be seen working without any training. Writes samples.csv and pictures.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "../common_options.hpp"
#include "ddpm/ddpm.hpp"
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

int run(const Options& options) {
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
             " (default: evenly for ddpm/ddim, karras for the solvers)")
      ->check(CLI::IsMember(ddpm::enum_names<ddpm::GridKind>()));
  app.add_option("--T", options.num_timesteps, "diffusion steps T of the schedule")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--steps", options.sampler.steps,
                 "sampling steps, one network evaluation each (Heun: two); 0: the sampler's "
                 "default (T for ddpm, 50 for ddim/euler/euler-a, 25 for heun, 20 for "
                 "dpm++/unipc)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--schedule", options.schedule, "linear or cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  app.add_option_function<double>(
         "--eta", [&options](double value) { options.sampler.eta = value; },
         "noise: DDIM eta (default 0), euler-a and dpm++2m-sde (default 1)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--s-churn", options.sampler.solver.s_churn, "euler/heun churn (0: the ODE)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--n", options.n, "number of samples")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  app.add_option("--seed", options.seed, "random seed")->capture_default_str();
  app.add_option("--out", options.out, "output folder")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::cerr << "ddpm-exact-mixture: " << e.what() << "\n";
    return 1;
  }
}
