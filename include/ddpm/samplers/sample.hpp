// SPDX-License-Identifier: MIT
// A sampler chosen by name (SamplerKind: ddpm, ddim or a grid solver, with its grid and steps in
// a SamplerSpec) and one call that runs it over a denoiser, so a program's --sampler option needs
// no branch of its own; and labeled sampling in chunks with classifier-free or classifier
// guidance.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ddpm/core/communicator.hpp"
#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/guidance.hpp"
#include "ddpm/samplers/ancestral.hpp"
#include "ddpm/samplers/common.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/solvers.hpp"

namespace ddpm {

/// Which reverse process draws the samples: ancestral (Ho et al. 2020, Algorithm 2; named "ddpm"),
/// DDIM (Song et al. 2021) or one of the grid solvers of SolverSampler.
enum class SamplerKind {
  ancestral,        ///< AncestralSampler, one step per schedule step (named "ddpm")
  ddim,             ///< DdimSampler (eta 0 unless set)
  euler,            ///< SolverKind::euler
  euler_ancestral,  ///< SolverKind::euler_ancestral
  heun,             ///< SolverKind::heun
  dpmpp_2m,         ///< SolverKind::dpmpp_2m
  dpmpp_3m,         ///< SolverKind::dpmpp_3m
  dpmpp_2m_sde,     ///< SolverKind::dpmpp_2m_sde
  unipc             ///< SolverKind::unipc
};

/// The names of the SamplerKind values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<SamplerKind> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "sampler";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<SamplerKind>, 9> names = {{
      {SamplerKind::ancestral, "ddpm"},
      {SamplerKind::ddim, "ddim"},
      {SamplerKind::euler, "euler"},
      {SamplerKind::euler_ancestral, "euler-a"},
      {SamplerKind::heun, "heun"},
      {SamplerKind::dpmpp_2m, "dpm++2m"},
      {SamplerKind::dpmpp_3m, "dpm++3m"},
      {SamplerKind::dpmpp_2m_sde, "dpm++2m-sde"},
      {SamplerKind::unipc, "unipc"},
  }};
};

/// Whether a sampler steps between the schedule's own timesteps (ddpm, ddim) rather than over
/// any noise-level grid (the solvers).
[[nodiscard]] constexpr bool steps_on_schedule(SamplerKind kind) noexcept {
  return kind == SamplerKind::ancestral || kind == SamplerKind::ddim;
}

/// The usual number of sampling steps for a diffusion of T steps: all T for ancestral sampling,
/// 50 for DDIM, Euler and Euler-ancestral, 25 for Heun (49 network evaluations), 20 for the
/// multistep solvers (never more than T on the schedule's own steps).
[[nodiscard]] inline int default_sample_steps(SamplerKind kind, int T) noexcept {
  switch (kind) {
    case SamplerKind::ancestral:
      return T;
    case SamplerKind::ddim:
      return std::min(50, T);
    case SamplerKind::euler:
    case SamplerKind::euler_ancestral:
      return 50;
    case SamplerKind::heun:
      return 25;
    default:
      return 20;
  }
}

/// The usual grid: evenly respaced steps for ddpm and ddim, log-SNR uniform (exponential) levels
/// for the solvers. Measured (docs/samplers.md): on linear T = 1000, whose s_max is 157, Karras
/// (rho = 7) leaves too few levels where the modes separate and was the worst grid at <= 10 NFE.
[[nodiscard]] constexpr GridKind default_grid(SamplerKind kind) noexcept {
  return steps_on_schedule(kind) ? GridKind::evenly : GridKind::exponential;
}

/// Everything that picks a sampler, with the defaults of default_sample_steps and default_grid.
struct SamplerSpec {
  SamplerKind kind = SamplerKind::ancestral;    ///< which sampler or solver
  std::optional<GridKind> grid = std::nullopt;  ///< unset: default_grid(kind)
  int steps = 0;                                ///< 0: default_sample_steps(kind, T)
  /// DDIM's eta (default 0), or the noise of euler-a and dpm++2m-sde (default 1); others ignore it.
  std::optional<double> eta = std::nullopt;
  SolverOptions solver = {};  ///< churn, UniPC's order and the like (its eta is replaced by `eta`)

  /// The grid to use: `grid`, or default_grid(kind) when unset.
  [[nodiscard]] GridKind grid_kind() const noexcept { return grid.value_or(default_grid(kind)); }
  /// The number of levels for a schedule of T steps: `steps`, or default_sample_steps(kind, T).
  [[nodiscard]] int step_count(int T) const noexcept {
    return steps > 0 ? steps : default_sample_steps(kind, T);
  }
  /// The eta to use: `eta`, or its default (0 for DDIM, 1 for the stochastic solvers).
  [[nodiscard]] double eta_value() const noexcept {
    return eta.value_or(kind == SamplerKind::ddim ? 0.0 : 1.0);
  }
  /// The network evaluations a sample of this spec costs: one per level, Heun 2N - 1, UniPC's
  /// final corrector one more.
  [[nodiscard]] int network_evaluations(int T) const noexcept {
    const int n = step_count(T);
    if (kind == SamplerKind::heun) return 2 * n - 1;
    if (kind == SamplerKind::unipc && solver.unipc_final_corrector) return n + 1;
    return n;
  }
};

namespace detail {

inline SolverKind solver_kind(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::euler:
      return SolverKind::euler;
    case SamplerKind::euler_ancestral:
      return SolverKind::euler_ancestral;
    case SamplerKind::heun:
      return SolverKind::heun;
    case SamplerKind::dpmpp_2m:
      return SolverKind::dpmpp_2m;
    case SamplerKind::dpmpp_3m:
      return SolverKind::dpmpp_3m;
    case SamplerKind::dpmpp_2m_sde:
      return SolverKind::dpmpp_2m_sde;
    case SamplerKind::unipc:
      return SolverKind::unipc;
    default:
      throw InvalidArgument("sampler", std::string(to_string(kind)), "a grid solver");
  }
}

/// The respaced diffusion ddpm and ddim run for a spec over the full diffusion.
template <class Real>
GaussianDiffusion<Real> respaced_for(const SamplerSpec& spec, const GaussianDiffusion<Real>& full) {
  const int T = full.num_timesteps();
  const std::vector<int> kept = NoiseGrid::table_timesteps(T, spec.grid_kind(), spec.step_count(T));
  if (static_cast<int>(kept.size()) == T) return full;
  return GaussianDiffusion<Real>(full.schedule().respaced(kept), full.options());
}

}  // namespace detail

/// The original timesteps (rounded for continuous levels) a spec's sampler evaluates the model at,
/// first to last: what progress callbacks report and strips are labelled with.
[[nodiscard]] inline std::vector<int> sampling_timesteps(const SamplerSpec& spec,
                                                         const NoiseSchedule& full) {
  const int T = full.size();
  std::vector<int> visited;
  if (steps_on_schedule(spec.kind)) {
    const std::vector<int> kept =
        NoiseGrid::table_timesteps(T, spec.grid_kind(), spec.step_count(T));
    visited.assign(kept.rbegin(), kept.rend());
    return visited;
  }
  const NoiseGrid grid = NoiseGrid::make(full, spec.grid_kind(), spec.step_count(T), 7.0);
  for (int i = 0; i < grid.steps(); ++i)
    visited.push_back(static_cast<int>(std::lround(grid.level(i).timestep)));
  return visited;
}

/// Draws n samples of dimension dim with the sampler `kind` over `diffusion` (respace it for fewer
/// steps): AncestralSampler<Real>(diffusion).sample(...) or DdimSampler<Real>(diffusion, eta)
/// .sample(...), bitwise. `eta` is used by DDIM only. Row i is global sample first_sample + i.
/// The grid solvers need a SamplerSpec (the overload below).
///
///   Batch<float> x = ddpm::sample(ddpm::SamplerKind::ddim, diffusion, 0.0, model, 64, 2, rng);
template <class Real, class M, class OnStep = NoProgress>
Batch<Real> sample(SamplerKind kind, const GaussianDiffusion<Real>& diffusion, double eta,
                   M& denoiser, Index n, Index dim, const CounterRng& rng,
                   std::uint32_t first_sample = 0, OnStep&& on_step = {}) {
  detail::require(steps_on_schedule(kind), "sampler", to_string(kind),
                  "ddpm or ddim here (the grid solvers take a SamplerSpec and the full diffusion)");
  if (kind == SamplerKind::ddim) {
    return DdimSampler<Real>(diffusion, eta)
        .sample(denoiser, n, dim, rng, first_sample, std::forward<OnStep>(on_step));
  }
  return AncestralSampler<Real>(diffusion).sample(denoiser, n, dim, rng, first_sample,
                                                  std::forward<OnStep>(on_step));
}

/// Runs the reverse process of `spec` over the FULL (not respaced) diffusion from the given x_T
/// (in place) to x_0: ddpm and ddim on the spec's grid of schedule steps (karras and exponential
/// are refused: they need a solver), the solvers on any grid. Row i is global sample
/// first_sample + i, whose noise draws do not depend on the other rows; with a deterministic
/// sampler (DDIM eta = 0, the ODE solvers) x_0 is a function of x_T alone, which is how samples
/// compare with another framework's point for point.
template <class Real, class M, class OnStep = NoProgress>
void denoise(const SamplerSpec& spec, const GaussianDiffusion<Real>& diffusion, M& denoiser,
             Batch<Real>& x, const CounterRng& rng, std::uint32_t first_sample = 0,
             OnStep&& on_step = {}) {
  detail::require(!diffusion.schedule().is_respaced(), "diffusion", "a respaced diffusion",
                  "the full diffusion (the sampler's grid picks the steps)");
  if (spec.kind == SamplerKind::ddim) {
    DdimSampler<Real>(detail::respaced_for(spec, diffusion), spec.eta_value())
        .denoise(denoiser, x, rng, first_sample, std::forward<OnStep>(on_step));
  } else if (spec.kind == SamplerKind::ancestral) {
    AncestralSampler<Real>(detail::respaced_for(spec, diffusion))
        .denoise(denoiser, x, rng, first_sample, std::forward<OnStep>(on_step));
  } else {
    SolverOptions options = spec.solver;
    options.eta = spec.eta_value();
    const int T = diffusion.num_timesteps();
    SolverSampler<Real>(diffusion,
                        NoiseGrid::make(diffusion.schedule(), spec.grid_kind(), spec.step_count(T)),
                        detail::solver_kind(spec.kind), options)
        .denoise(denoiser, x, rng, first_sample, std::forward<OnStep>(on_step));
  }
}

/// Draws n samples with any sampler over the FULL (not respaced) diffusion: x_T from the prior,
/// then denoise(spec, ...). Row i is global sample first_sample + i for every sampler.
///
///   const ddpm::SamplerSpec spec{.kind = ddpm::SamplerKind::dpmpp_2m, .steps = 20};
///   Batch<float> x = ddpm::sample(spec, diffusion, model, 64, 2, rng);  // 20 network calls
template <class Real, class M, class OnStep = NoProgress>
Batch<Real> sample(const SamplerSpec& spec, const GaussianDiffusion<Real>& diffusion, M& denoiser,
                   Index n, Index dim, const CounterRng& rng, std::uint32_t first_sample = 0,
                   OnStep&& on_step = {}) {
  Batch<Real> x = detail::prior_sample<Real>(n, dim, rng, first_sample);
  denoise(spec, diffusion, denoiser, x, rng, first_sample, std::forward<OnStep>(on_step));
  return x;
}

/// How sample_labeled samples and guides.
struct LabeledSampling {
  SamplerSpec sampler = {};       ///< the sampler, its grid and steps
  double guidance = 0.0;          ///< classifier-free guidance weight w (0: the conditional model)
  double guidance_rescale = 0.0;  ///< classifier-free guidance rescale phi (Lin et al. 2023)
  double classifier_scale = 0.0;  ///< classifier guidance scale s (with a classifier)
  Index chunk = 256;              ///< samples per sampler call (bounds memory)
  /// Ranks to share the rows among (each computes its even share, rank_share, in chunks, and
  /// every rank ends with all rows, bitwise as one process computes them); null: this process
  /// computes every row.
  Communicator* ranks = nullptr;
};

/// The `label` of sample_labels that asks for the classes in turn.
inline constexpr int kClassesInTurn = -2;

/// Labels for n samples of a model with `num_classes` classes (0: unconditional): `label` for every
/// sample when label >= 0; with kClassesInTurn 0, 1, ..., num_classes - 1, 0, ... (kNoLabel each
/// for an unconditional model); kNoLabel for any other negative label. Checked against their use:
/// guidance != 0 (classifier-free) needs a conditional model; a class needs a conditional model
/// that knows it, or classifier guidance (`classifier`: the class is the classifier's, which
/// guides an unconditional model too, and checks its own range); classifier guidance needs a
/// class. Errors name `prefix` + "label" or "guidance" (a program passes "--" to name its flags).
///
///   sample_labels(5, ddpm::kClassesInTurn, 2) == {0, 1, 0, 1, 0}
[[nodiscard]] inline std::vector<int> sample_labels(Index n, int label, int num_classes,
                                                    double guidance = 0.0, bool classifier = false,
                                                    std::string_view prefix = "") {
  const auto name = [&](std::string_view parameter) {
    return std::string(prefix).append(parameter);
  };
  if (num_classes <= 0) {
    detail::require(label < 0 || classifier, name("label"), label,
                    "-1 (none) for an unconditional model (a class needs a class-conditional one, "
                    "or a classifier to guide it)");
    detail::require(guidance == 0.0, name("guidance"), guidance,
                    "0 for an unconditional model (guidance needs a class-conditional one)");
  }
  detail::require(num_classes <= 0 || label < num_classes, name("label"), label, [&] {
    return "a class 0.." + std::to_string(num_classes - 1) +
           ", -1 (none) or -2 (the classes in turn)";
  });
  detail::require(!classifier || label >= 0, name("label"), label,
                  "a class in 0..num_classes-1 for classifier guidance");
  std::vector<int> labels(static_cast<std::size_t>(std::max<Index>(n, 0)), kNoLabel);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (label >= 0) {
      labels[i] = label;
    } else if (label == kClassesInTurn && num_classes > 0) {
      labels[i] = static_cast<int>(i % static_cast<std::size_t>(num_classes));
    }
  }
  return labels;
}

/// Runs the reverse process from x_init (one row per entry of `labels`, kNoLabel for none) of a
/// conditional model over the full diffusion, `chunk` rows per sampler call: with a `classifier`
/// (non-null), ClassifierGuidance at classifier_scale; else with guidance != 0,
/// ClassifierFreeGuidance at weight w; else WithLabels. Row i is global sample i of `rng`, so the
/// rows do not depend on the chunk size. on_step(first, progress) follows every step of the chunk
/// whose first row is `first` (with `ranks`, of this rank's chunks only).
template <class Real, class M, class C, class OnStep = NoProgress>
Batch<Real> sample_labeled_from(const LabeledSampling& options,
                                const GaussianDiffusion<Real>& diffusion, M& model, C* classifier,
                                std::span<const int> labels, Batch<Real> x_init,
                                const CounterRng& rng, OnStep&& on_step = {}) {
  const auto n = static_cast<Index>(labels.size());
  detail::require(n >= 1, "labels.size()", n, "a number of samples >= 1");
  detail::require(x_init.rows() == n, "x_init rows", x_init.rows(),
                  [&] { return "one row per label (" + detail::to_text(n) + ")"; });
  detail::require(options.chunk >= 1, "chunk", options.chunk, "a number of samples >= 1");
  const ItemRange mine = options.ranks != nullptr ? rank_share(*options.ranks, n) : ItemRange{0, n};
  Batch<Real> x;
  for (Index first = mine.begin; first < mine.end; first += options.chunk) {
    const Index count = std::min(options.chunk, mine.end - first);
    const std::span<const int> chunk_labels =
        labels.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(count));
    x = x_init.middleRows(first, count);
    const auto run = [&](auto& denoiser) {
      denoise(options.sampler, diffusion, denoiser, x, rng, static_cast<std::uint32_t>(first),
              [&](const SamplerProgress<Real>& p) { on_step(first, p); });
    };
    if (classifier != nullptr) {
      ClassifierGuidance<Real, M, C> denoiser(model, *classifier, chunk_labels,
                                              options.classifier_scale);
      run(denoiser);
    } else if (options.guidance != 0.0) {
      ClassifierFreeGuidance<Real, M> denoiser(model, chunk_labels, options.guidance,
                                               options.guidance_rescale);
      run(denoiser);
    } else {
      WithLabels<Real, M> denoiser(model, chunk_labels);
      run(denoiser);
    }
    x_init.middleRows(first, count) = x;
  }
  if (options.ranks != nullptr) gather_rows(*options.ranks, x_init, mine);
  return x_init;
}

/// sample_labeled_from with x_T drawn from the prior (row i as global sample i):
///
///   const Batch<float> x = ddpm::sample_labeled({.sampler = {.kind = SamplerKind::ddim},
///                                                .guidance = 2.0},
///                                               diffusion, unet, no_classifier, labels, dim, rng);
template <class Real, class M, class C, class OnStep = NoProgress>
Batch<Real> sample_labeled(const LabeledSampling& options, const GaussianDiffusion<Real>& diffusion,
                           M& model, C* classifier, std::span<const int> labels, Index dim,
                           const CounterRng& rng, OnStep&& on_step = {}) {
  const auto n = static_cast<Index>(labels.size());
  detail::require(n >= 1, "labels.size()", n, "a number of samples >= 1");
  return sample_labeled_from(options, diffusion, model, classifier, labels,
                             detail::prior_sample<Real>(n, dim, rng, 0), rng,
                             std::forward<OnStep>(on_step));
}

}  // namespace ddpm
