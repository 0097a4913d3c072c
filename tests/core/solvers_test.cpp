// SPDX-License-Identifier: MIT
// Noise-level grids and the grid solvers: the grids' exact values, the convergence order of every
// ODE solver measured with the exact mixture denoiser (the test that catches off-by-one grids),
// the stochastic samplers' marginals, determinism, network-evaluation counts and errors.
#include "ddpm/samplers/solvers.hpp"

#include <doctest/doctest.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/core/parallel.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/gaussian_mixture.hpp"
#include "ddpm/guidance.hpp"
#include "ddpm/mixture_denoiser.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/schedule.hpp"
#include "support.hpp"

namespace solvers_test {

namespace {

using ddpm::Batch;
using ddpm::GridKind;
using ddpm::NoiseGrid;
using ddpm::SolverKind;

const ddpm::NoiseSchedule& linear1000() {
  static const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  return schedule;
}

double rms(const Batch<double>& a, const Batch<double>& b) {
  return std::sqrt((a - b).squaredNorm() / static_cast<double>(a.size()));
}

/// Least-squares slope of log(error) against log(steps), negated: the convergence order.
double fitted_order(const std::vector<int>& steps, const std::vector<double>& errors) {
  double mx = 0, my = 0;
  const auto n = static_cast<double>(steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i) {
    mx += std::log(steps[i]) / n;
    my += std::log(errors[i]) / n;
  }
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const double dx = std::log(steps[i]) - mx;
    sxy += dx * (std::log(errors[i]) - my);
    sxx += dx * dx;
  }
  return -sxy / sxx;
}

/// x at the smallest noise level s_0, before the final jump, from x_T at s_{T-1}.
Batch<double> solve_to_smallest_level(SolverKind kind, GridKind grid_kind, int steps,
                                      const Batch<double>& x_T, ddpm::SolverOptions options = {}) {
  const ddpm::GaussianDiffusion<double> diffusion(linear1000());
  ddpm::GaussianMixtureDenoiser<double> exact(ddpm::eight_gaussians_mixture(), linear1000());
  ddpm::SolverSampler<double> solver(diffusion, NoiseGrid::make(linear1000(), grid_kind, steps),
                                     kind, options);
  Batch<double> x = x_T;
  solver.advance(exact, x, ddpm::CounterRng(1), steps - 1);
  return x;
}

}  // namespace

TEST_CASE("Grids over the schedule's steps have diffusers' values") {
  using V = std::vector<int>;
  CHECK(NoiseGrid::table_timesteps(1000, GridKind::leading, 10) ==
        V{0, 100, 200, 300, 400, 500, 600, 700, 800, 900});
  CHECK(NoiseGrid::table_timesteps(1000, GridKind::trailing, 10) ==
        V{99, 199, 299, 399, 499, 599, 699, 799, 899, 999});
  // arange(1000, 0, -333.33) = 1000, 666.67, 333.33 -> round -> 1000, 667, 333 -> minus 1.
  CHECK(NoiseGrid::table_timesteps(1000, GridKind::trailing, 3) == V{332, 666, 999});
  CHECK(NoiseGrid::table_timesteps(1000, GridKind::linspace, 10) ==
        V{0, 111, 222, 333, 444, 555, 666, 777, 888, 999});
  // linspace(0, 5, 3) = 0, 2.5, 5: numpy rounds 2.5 to even (2); "evenly" rounds it away (3).
  CHECK(NoiseGrid::table_timesteps(6, GridKind::linspace, 3) == V{0, 2, 5});
  CHECK(NoiseGrid::table_timesteps(6, GridKind::evenly, 3) == V{0, 3, 5});
  CHECK(NoiseGrid::table_timesteps(1000, GridKind::ddim, 4) == V{0, 250, 500, 750});
  for (const GridKind kind : {GridKind::evenly, GridKind::ddim, GridKind::leading,
                              GridKind::linspace, GridKind::trailing}) {
    for (const int n : {1, 7, 50, 999, 1000}) {
      CAPTURE(n);
      if (kind == GridKind::ddim && n == 999) continue;  // no integer stride gives 999 steps
      const V kept = NoiseGrid::table_timesteps(1000, kind, n);
      REQUIRE(static_cast<int>(kept.size()) == n);
      for (std::size_t i = 1; i < kept.size(); ++i) CHECK(kept[i] > kept[i - 1]);
      CHECK(kept.front() >= 0);
      CHECK(kept.back() <= 999);
    }
  }
  CHECK(NoiseGrid::table_timesteps(1000, GridKind::trailing, 7).back() == 999);
}

TEST_CASE("A grid's levels run from the first level down to the clean end, each level once") {
  const ddpm::NoiseSchedule& schedule = linear1000();
  const NoiseGrid trailing = NoiseGrid::make(schedule, GridKind::trailing, 10);
  REQUIRE(trailing.steps() == 10);
  CHECK(trailing.level(0).timestep == 999);
  CHECK(trailing.level(0).alpha == schedule.sqrt_alphas_cumprod()[999]);
  CHECK(trailing.level(0).s == schedule.level(999));
  CHECK(trailing.level(9).timestep == 99);
  CHECK(trailing.level(10).clean());
  CHECK(trailing.level(10).alpha == 1.0);

  const double rho = 7.0;
  for (const int n : {2, 10, 25}) {
    CAPTURE(n);
    const NoiseGrid karras = NoiseGrid::make(schedule, GridKind::karras, n, rho);
    const NoiseGrid exponential = NoiseGrid::make(schedule, GridKind::exponential, n);
    const double s_max = schedule.level(999), s_min = schedule.level(0);
    CHECK(karras.level(0).s == s_max);
    CHECK(karras.level(n - 1).s == s_min);
    CHECK(karras.level(0).timestep == 999.0);
    CHECK(karras.level(n - 1).timestep == 0.0);
    CHECK(karras.level(n).clean());
    for (int i = 0; i < n; ++i) {
      CAPTURE(i);
      const double u = static_cast<double>(i) / (n - 1);
      const double a = std::pow(s_max, 1 / rho), b = std::pow(s_min, 1 / rho);
      CHECK(karras.level(i).s == doctest::Approx(std::pow(a + u * (b - a), rho)).epsilon(1e-13));
      CHECK(std::log(exponential.level(i).s) ==
            doctest::Approx(std::log(s_max) + u * (std::log(s_min) - std::log(s_max)))
                .epsilon(1e-13));
      // The level's model timestep maps back to the level; alpha and sigma are consistent.
      const ddpm::GridLevel& level = karras.level(i);
      CHECK(schedule.level_at_timestep(level.timestep) == doctest::Approx(level.s).epsilon(1e-12));
      CHECK(level.alpha * level.alpha + level.sigma * level.sigma == doctest::Approx(1.0));
      CHECK(level.sigma / level.alpha == doctest::Approx(level.s).epsilon(1e-14));
      if (i > 0) CHECK(karras.level(i).s < karras.level(i - 1).s);
    }
  }
}

TEST_CASE("timestep_at_level and level_at_timestep are inverse, and exact on the schedule") {
  const ddpm::NoiseSchedule& schedule = linear1000();
  for (const int t : {0, 1, 17, 500, 998, 999}) {
    CHECK(schedule.timestep_at_level(schedule.level(t)) == doctest::Approx(t).epsilon(1e-12));
    CHECK(schedule.level_at_timestep(t) == schedule.level(t));
  }
  for (const double t : {0.25, 10.5, 499.999, 998.75}) {
    CHECK(schedule.timestep_at_level(schedule.level_at_timestep(t)) ==
          doctest::Approx(t).epsilon(1e-12));
    // Between two steps, log s is linear in t.
    const int below = static_cast<int>(t);
    const double f = t - below;
    CHECK(std::log(schedule.level_at_timestep(t)) ==
          doctest::Approx((1 - f) * std::log(schedule.level(below)) +
                          f * std::log(schedule.level(below + 1))));
  }
  CHECK(schedule.timestep_at_level(schedule.level(0) / 2) == 0.0);      // clamped
  CHECK(schedule.timestep_at_level(schedule.level(999) * 2) == 999.0);  // clamped
  DDPM_CHECK_INVALID("noise level", schedule.timestep_at_level(0.0));
  DDPM_CHECK_INVALID("t", schedule.level_at_timestep(999.5));
  DDPM_CHECK_INVALID("t", schedule.level_at_timestep(-0.1));
}

TEST_CASE("The exact mixture denoiser at a real timestep is exact at that noise level") {
  const ddpm::NoiseSchedule& schedule = linear1000();
  const ddpm::GaussianMixture mixture = ddpm::eight_gaussians_mixture();
  ddpm::GaussianMixtureDenoiser<double> exact(mixture, schedule, ddpm::ModelOutput::x0);
  const Batch<double> x = ddpm::test::random_batch(4, 2, 3);
  // At integral real t it equals the int overload.
  Batch<double> by_int, by_real;
  const std::vector<int> t_int(4, 250);
  const std::vector<double> t_real(4, 250.0);
  exact.predict(x, std::span<const int>(t_int), by_int);
  exact.predict(x, std::span<const double>(t_real), by_real);
  CHECK((by_int - by_real).cwiseAbs().maxCoeff() < 1e-12);
  // Between steps: the same as a one-step schedule whose ab is that level's.
  const double t = 250.4, s = schedule.level_at_timestep(t);
  const ddpm::NoiseSchedule one_step(std::vector<double>{1.0 - 1.0 / (1.0 + s * s)});
  ddpm::GaussianMixtureDenoiser<double> at_level(mixture, one_step, ddpm::ModelOutput::x0);
  Batch<double> expected;
  at_level.predict(x, std::vector<int>(4, 0), expected);
  exact.predict(x, std::span<const double>(std::vector<double>(4, t)), by_real);
  CHECK((expected - by_real).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("Euler on a schedule grid is DDIM with eta = 0, for eps, x0 and v models") {
  const ddpm::NoiseSchedule& schedule = linear1000();
  for (const ddpm::ModelOutput output :
       {ddpm::ModelOutput::epsilon, ddpm::ModelOutput::x0, ddpm::ModelOutput::v}) {
    const ddpm::GaussianDiffusion<double> full(schedule, {.output = output});
    ddpm::GaussianMixtureDenoiser<double> exact(ddpm::eight_gaussians_mixture(), schedule, output);
    const NoiseGrid grid = NoiseGrid::make(schedule, GridKind::evenly, 25);
    ddpm::SolverSampler<double> euler(full, grid, SolverKind::euler);
    ddpm::DdimSampler<double> ddim(
        ddpm::GaussianDiffusion<double>(schedule.respaced("evenly 25"), {.output = output}));
    const ddpm::CounterRng rng(5);
    const Batch<double> a = euler.sample(exact, 64, 2, rng);
    const Batch<double> b = ddim.sample(exact, 64, 2, rng);
    CHECK(euler.network_evaluations() == 25);
    CHECK((a - b).cwiseAbs().maxCoeff() < 1e-9);
  }
}

TEST_CASE("Every ODE solver converges at its order (exact mixture denoiser, Karras grid)") {
  // The error at s_0 (before the final jump to the clean level) against a fine-grid solution of
  // the same ODE from the same x_T. An off-by-one level, a wrong h or a stale history entry
  // drops the fitted slope by about one.
  const Batch<double> x_T = ddpm::test::random_batch(32, 2, 11);
  const Batch<double> reference =
      solve_to_smallest_level(SolverKind::dpmpp_3m, GridKind::karras, 4000, x_T);
  struct Case {
    const char* name;
    SolverKind kind;
    ddpm::SolverOptions options;
    double order;
    std::vector<int> steps;
  };
  const std::vector<int> range = {40, 56, 80, 113, 160};
  // Third order leaves its pre-asymptotic range later (3M fits 3.34 on 40..160).
  const std::vector<int> fine = {160, 226, 320, 452, 640};
  const ddpm::SolverOptions reference_d2{.dpmpp_3m_reference_d2 = true};
  const ddpm::SolverOptions final_corrector{.unipc_final_corrector = true};
  const std::vector<Case> cases = {
      {"euler", SolverKind::euler, {}, 1.0, range},
      {"heun", SolverKind::heun, {}, 2.0, {20, 28, 40, 56, 80}},
      {"dpm++2m", SolverKind::dpmpp_2m, {}, 2.0, range},
      {"dpm++3m", SolverKind::dpmpp_3m, {}, 3.0, fine},
      {"dpm++3m, the reference code's D2 term", SolverKind::dpmpp_3m, reference_d2, 2.0, fine},
      {"dpm++2m-sde, eta 0 (= 2M)", SolverKind::dpmpp_2m_sde, {.eta = 0.0}, 2.0, range},
      {"unipc-1", SolverKind::unipc, {.unipc_order = 1}, 2.0, range},
      {"unipc-2", SolverKind::unipc, {}, 3.0, range},
      {"unipc-2, final corrector", SolverKind::unipc, final_corrector, 3.0, range},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    std::vector<double> errors;
    for (const int n : c.steps) {
      errors.push_back(
          rms(solve_to_smallest_level(c.kind, GridKind::karras, n, x_T, c.options), reference));
      INFO(std::string(c.name), " N=", n, " error ", errors.back());
    }
    const double order = fitted_order(c.steps, errors);
    INFO(std::string(c.name), " fitted order ", order);
    CHECK(std::abs(order - c.order) <= 0.3);
  }
}

namespace {

/// Fraction of points nearest each 8gaussians mean, and the RMS distance to that mean.
std::pair<std::vector<double>, double> mode_masses(const Batch<double>& x) {
  const ddpm::GaussianMixture mixture = ddpm::eight_gaussians_mixture();
  std::vector<double> mass(8, 0.0);
  double squared = 0;
  for (ddpm::Index i = 0; i < x.rows(); ++i) {
    ddpm::Index nearest = 0;
    (mixture.means.rowwise() - x.row(i)).rowwise().squaredNorm().minCoeff(&nearest);
    mass[static_cast<std::size_t>(nearest)] += 1.0 / static_cast<double>(x.rows());
    squared += (mixture.means.row(nearest) - x.row(i)).squaredNorm();
  }
  return {mass, std::sqrt(squared / static_cast<double>(x.rows()) / 2.0)};
}

const std::vector<SolverKind>& all_solvers() {
  static const std::vector<SolverKind> kinds = {
      SolverKind::euler,    SolverKind::euler_ancestral, SolverKind::heun, SolverKind::dpmpp_2m,
      SolverKind::dpmpp_3m, SolverKind::dpmpp_2m_sde,    SolverKind::unipc};
  return kinds;
}

}  // namespace

TEST_CASE("Every solver reproduces the mixture with the exact denoiser (modes and their width)") {
  // 4000 samples: a mode's mass has standard error sqrt(1/8 * 7/8 / 4000) = 0.0052; 5 SE allowed.
  // The per-coordinate spread around the nearest mean is the component std 0.354 (2% allowed:
  // the SE of an RMS over 8000 coordinates is 0.8%).
  const ddpm::NoiseSchedule& schedule = linear1000();
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  ddpm::GaussianMixtureDenoiser<double> exact(ddpm::eight_gaussians_mixture(), schedule);
  const double component_std = 0.5 / 1.414;
  for (const SolverKind kind : all_solvers()) {
    CAPTURE(static_cast<int>(kind));
    ddpm::SolverSampler<double> solver(diffusion, NoiseGrid::make(schedule, GridKind::karras, 50),
                                       kind);
    const auto [mass, spread] = mode_masses(solver.sample(exact, 4000, 2, ddpm::CounterRng(21)));
    for (const double m : mass) CHECK(std::abs(m - 0.125) < 5 * 0.0052);
    CHECK(spread == doctest::Approx(component_std).epsilon(0.02));
  }
}

TEST_CASE("Solvers count their network evaluations: N, Heun 2N - 1, UniPC's final corrector +1") {
  const ddpm::NoiseSchedule& schedule = linear1000();
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  ddpm::GaussianMixtureDenoiser<double> exact(ddpm::eight_gaussians_mixture(), schedule);
  for (const SolverKind kind : all_solvers()) {
    for (const int n : {1, 2, 3, 10}) {
      CAPTURE(static_cast<int>(kind));
      CAPTURE(n);
      ddpm::SolverSampler<double> solver(diffusion,
                                         NoiseGrid::make(schedule, GridKind::exponential, n), kind);
      const Batch<double> x = solver.sample(exact, 3, 2, ddpm::CounterRng(2));
      CHECK(x.allFinite());
      CHECK(solver.network_evaluations() == (kind == SolverKind::heun ? 2 * n - 1 : n));
    }
  }
  ddpm::SolverSampler<double> corrected(diffusion, NoiseGrid::make(schedule, GridKind::karras, 10),
                                        SolverKind::unipc, {.unipc_final_corrector = true});
  corrected.sample(exact, 3, 2, ddpm::CounterRng(2));
  CHECK(corrected.network_evaluations() == 11);
}

TEST_CASE("Solver samples are bitwise the same for any batch split and thread count") {
  const ddpm::NoiseSchedule& schedule = linear1000();
  const ddpm::GaussianDiffusion<float> diffusion(schedule);
  ddpm::GaussianMixtureDenoiser<float> exact(ddpm::eight_gaussians_mixture(), schedule);
  ddpm::SolverOptions churn;
  churn.s_churn = 10.0;
  for (const SolverKind kind : all_solvers()) {
    CAPTURE(static_cast<int>(kind));
    const auto run = [&](ddpm::Index n, std::uint32_t first) {
      ddpm::SolverSampler<float> solver(
          diffusion, NoiseGrid::make(schedule, GridKind::karras, 12), kind,
          kind == SolverKind::heun || kind == SolverKind::euler ? churn : ddpm::SolverOptions{});
      return solver.sample(exact, n, 2, ddpm::CounterRng(4), first);
    };
    const Batch<float> whole = run(300, 0);
    Batch<float> parts(300, 2);
    parts.topRows(7) = run(7, 0);
    parts.bottomRows(293) = run(293, 7);
    CHECK((whole.array() == parts.array()).all());
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const Batch<float> one_thread = run(300, 0);
    omp_set_num_threads(2);
    const Batch<float> two_threads = run(300, 0);
    omp_set_num_threads(saved);
    CHECK((one_thread.array() == two_threads.array()).all());
    CHECK((one_thread.array() == whole.array()).all());
#endif
  }
}

TEST_CASE("Stochastic solvers draw fresh noise per step, eta and churn change the path") {
  const ddpm::NoiseSchedule& schedule = linear1000();
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  ddpm::GaussianMixtureDenoiser<double> exact(ddpm::eight_gaussians_mixture(), schedule);
  const NoiseGrid grid = NoiseGrid::make(schedule, GridKind::karras, 20);
  const auto run = [&](SolverKind kind, ddpm::SolverOptions options, std::uint64_t seed) {
    ddpm::SolverSampler<double> solver(diffusion, grid, kind, options);
    return solver.sample(exact, 16, 2, ddpm::CounterRng(seed));
  };
  // eta = 0 turns Euler-ancestral into Euler and 2M-SDE into 2M.
  CHECK((run(SolverKind::euler_ancestral, {.eta = 0.0}, 1) - run(SolverKind::euler, {}, 1))
            .cwiseAbs()
            .maxCoeff() < 1e-9);
  CHECK((run(SolverKind::dpmpp_2m_sde, {.eta = 0.0}, 1) - run(SolverKind::dpmpp_2m, {}, 1))
            .cwiseAbs()
            .maxCoeff() < 1e-9);
  // With noise, different seeds give different samples from the same x_T... and the same seed
  // the same.
  CHECK((run(SolverKind::euler_ancestral, {}, 1).array() ==
         run(SolverKind::euler_ancestral, {}, 1).array())
            .all());
  CHECK((run(SolverKind::euler, {.s_churn = 5.0}, 1) - run(SolverKind::euler, {}, 1))
            .cwiseAbs()
            .maxCoeff() > 1e-3);
}

TEST_CASE("Solvers clip x0^ when the diffusion clips, and compose with guidance adaptors") {
  const ddpm::NoiseSchedule& schedule = linear1000();
  // A mixture with modes outside [-1, 1]: clipped samples end inside it.
  const ddpm::GaussianDiffusion<double> clipped(schedule, {.clip_x0 = true});
  ddpm::GaussianMixtureDenoiser<double> exact(ddpm::eight_gaussians_mixture(), schedule);
  for (const SolverKind kind : all_solvers()) {
    ddpm::SolverSampler<double> solver(clipped, NoiseGrid::make(schedule, GridKind::karras, 10),
                                       kind);
    const Batch<double> x = solver.sample(exact, 64, 2, ddpm::CounterRng(8));
    CHECK(x.cwiseAbs().maxCoeff() <= 1.0);
  }
  // Classifier-free guidance with w = 0 is the conditional model: component 3 only.
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const std::vector<int> labels(500, 3);
  ddpm::ClassifierFreeGuidance<double, decltype(exact)> guided(exact, labels, 0.0);
  ddpm::SolverSampler<double> solver(diffusion, NoiseGrid::make(schedule, GridKind::karras, 20),
                                     SolverKind::dpmpp_2m);
  const Batch<double> x = solver.sample(guided, 500, 2, ddpm::CounterRng(9));
  // (0.3% of component 3 lies nearer a neighbouring mean.)
  CHECK(mode_masses(x).first[3] > 0.99);
}

TEST_CASE("Solvers and grids refuse bad arguments, naming them") {
  const ddpm::NoiseSchedule& schedule = linear1000();
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const NoiseGrid grid = NoiseGrid::make(schedule, GridKind::karras, 10);
  DDPM_CHECK_INVALID("steps", NoiseGrid::make(schedule, GridKind::trailing, 0));
  DDPM_CHECK_INVALID("steps", NoiseGrid::make(schedule, GridKind::evenly, 1001));
  DDPM_CHECK_INVALID("rho", NoiseGrid::make(schedule, GridKind::karras, 10, 0.0));
  DDPM_CHECK_INVALID("schedule",
                     NoiseGrid::make(schedule.respaced("evenly 10"), GridKind::karras, 5));
  DDPM_CHECK_INVALID("grid", NoiseGrid::table_timesteps(1000, GridKind::karras, 5));
  DDPM_CHECK_INVALID("levels[1]", NoiseGrid::from_levels(schedule, {2.0, 3.0}));
  DDPM_CHECK_INVALID(
      "diffusion",
      ddpm::SolverSampler<double>(ddpm::GaussianDiffusion<double>(schedule.respaced("evenly 10")),
                                  grid, SolverKind::euler));
  DDPM_CHECK_INVALID(
      "eta", ddpm::SolverSampler<double>(diffusion, grid, SolverKind::euler, {.eta = -1.0}));
  DDPM_CHECK_INVALID(
      "s_churn", ddpm::SolverSampler<double>(diffusion, grid, SolverKind::heun, {.s_churn = -1.0}));
  DDPM_CHECK_INVALID("unipc_order", ddpm::SolverSampler<double>(diffusion, grid, SolverKind::unipc,
                                                                {.unipc_order = 4}));
  ddpm::GaussianMixtureDenoiser<double> exact(ddpm::eight_gaussians_mixture(), schedule);
  ddpm::SolverSampler<double> solver(diffusion, grid, SolverKind::euler);
  Batch<double> x = ddpm::test::random_batch(2, 2, 1);
  DDPM_CHECK_INVALID("until", solver.advance(exact, x, ddpm::CounterRng(1), 11));
}

TEST_CASE("Solvers sample a zero-terminal-SNR schedule with a v model (first step in VP form)") {
  // ab_{T-1} = 0: x_T = z is exactly the marginal there, s = inf. Every grid visits T-1 first and
  // steps from s = inf in VP form; Karras levels then span s_{T-2}..s_0.
  const ddpm::NoiseSchedule schedule = linear1000().zero_terminal_snr();
  const ddpm::GaussianDiffusion<double> diffusion(schedule, {.output = ddpm::ModelOutput::v});
  ddpm::GaussianMixtureDenoiser<double> exact(ddpm::eight_gaussians_mixture(), schedule,
                                              ddpm::ModelOutput::v);
  const double component_std = 0.5 / 1.414;
  for (const GridKind grid : {GridKind::trailing, GridKind::karras}) {
    // Rescaled, s_{T-2} = 15406: a Karras grid from there needs more levels than from s = 157
    // (30 levels: Euler's spread is 19% wide, 3M's 43%; 120 levels: within 3%).
    const NoiseGrid levels = NoiseGrid::make(schedule, grid, grid == GridKind::karras ? 120 : 30);
    CHECK(levels.level(0).timestep == 999.0);
    CHECK(std::isinf(levels.level(0).s));
    CHECK(std::isfinite(levels.level(1).s));
    for (const SolverKind kind : all_solvers()) {
      CAPTURE(static_cast<int>(grid));
      CAPTURE(static_cast<int>(kind));
      ddpm::SolverSampler<double> solver(diffusion, levels, kind);
      const Batch<double> x = solver.sample(exact, 2000, 2, ddpm::CounterRng(31));
      REQUIRE(x.allFinite());
      const auto [mass, spread] = mode_masses(x);
      // 2000 samples: a mode's SE is 0.0074; 5 SE. Width within 3%.
      for (const double m : mass) CHECK(std::abs(m - 0.125) < 5 * 0.0074);
      CHECK(spread == doctest::Approx(component_std).epsilon(0.03));
    }
  }
}

namespace {

/// The exact classifier of a mixture's components: grad log p(k | x_t) = grad log p_k(x_t) -
/// grad log p(x_t) = (eps*(x_t) - eps*_k(x_t)) / sqrt(1 - ab_t).
struct ExactComponentClassifier {
  ddpm::GaussianMixtureDenoiser<double>* exact;
  const ddpm::NoiseSchedule* schedule;
  void log_prob_gradient(const Batch<double>& x, std::span<const int> t, std::span<const int> y,
                         Batch<double>& grad) {
    Batch<double> unconditional, conditional;
    exact->predict(x, t, unconditional);
    exact->predict(x, t, y, conditional);
    grad = unconditional - conditional;
    for (ddpm::Index i = 0; i < x.rows(); ++i) {
      const auto step = static_cast<std::size_t>(t[static_cast<std::size_t>(i)]);
      grad.row(i) /= schedule->sqrt_one_minus_alphas_cumprod()[step];
    }
  }
};

}  // namespace

TEST_CASE(
    "Classifier guidance composes with every solver: the exact classifier at s = 1 is the "
    "conditional model") {
  // eps - sigma g = eps_k exactly on a grid of schedule steps (the classifier sees integer t).
  const ddpm::NoiseSchedule& schedule = linear1000();
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  ddpm::GaussianMixtureDenoiser<double> exact(ddpm::eight_gaussians_mixture(), schedule);
  ExactComponentClassifier classifier{&exact, &schedule};
  const std::vector<int> labels(40, 5);
  for (const SolverKind kind : all_solvers()) {
    CAPTURE(static_cast<int>(kind));
    ddpm::SolverSampler<double> solver(diffusion, NoiseGrid::make(schedule, GridKind::trailing, 15),
                                       kind);
    ddpm::ClassifierGuidance<double, decltype(exact), ExactComponentClassifier> guided(
        exact, classifier, labels, 1.0);
    ddpm::WithLabels<double, decltype(exact)> conditional(exact, labels);
    const Batch<double> a = solver.sample(guided, 40, 2, ddpm::CounterRng(12));
    const Batch<double> b = solver.sample(conditional, 40, 2, ddpm::CounterRng(12));
    CHECK((a - b).cwiseAbs().maxCoeff() < 1e-8);
  }
}

}  // namespace solvers_test
