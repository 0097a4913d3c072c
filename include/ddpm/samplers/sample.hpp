// SPDX-License-Identifier: MIT
// A sampler chosen by name (SamplerKind: "ddpm" ancestral or "ddim") and one call that runs it
// over a denoiser, so a program's --sampler option needs no branch of its own; and labeled
// sampling in chunks with classifier-free or classifier guidance.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

namespace ddpm {

/// Which reverse process draws the samples: ancestral (Ho et al. 2020, Algorithm 2; named "ddpm")
/// or DDIM (Song et al. 2021; "ddim").
enum class SamplerKind { ancestral, ddim };

template <>
struct EnumTable<SamplerKind> {
  static constexpr std::string_view parameter = "sampler";
  static constexpr std::array<EnumName<SamplerKind>, 2> names = {
      {{SamplerKind::ancestral, "ddpm"}, {SamplerKind::ddim, "ddim"}}};
};

/// The usual number of sampling steps for a diffusion of T steps: all T for ancestral sampling,
/// 50 (at most T) for DDIM.
[[nodiscard]] inline int default_sample_steps(SamplerKind kind, int T) noexcept {
  return kind == SamplerKind::ddim ? std::min(50, T) : T;
}

/// Draws n samples of dimension dim with the sampler `kind` over `diffusion` (respace it for fewer
/// steps): AncestralSampler<Real>(diffusion).sample(...) or DdimSampler<Real>(diffusion, eta)
/// .sample(...), bitwise. `eta` is used by DDIM only. Row i is global sample first_sample + i.
///
///   Batch<float> x = ddpm::sample(ddpm::SamplerKind::ddim, diffusion, 0.0, model, 64, 2, rng);
template <class Real, class M, class OnStep = NoProgress>
Batch<Real> sample(SamplerKind kind, const GaussianDiffusion<Real>& diffusion, double eta,
                   M& denoiser, Index n, Index dim, const CounterRng& rng,
                   std::uint32_t first_sample = 0, OnStep&& on_step = {}) {
  if (kind == SamplerKind::ddim) {
    return DdimSampler<Real>(diffusion, eta)
        .sample(denoiser, n, dim, rng, first_sample, std::forward<OnStep>(on_step));
  }
  return AncestralSampler<Real>(diffusion).sample(denoiser, n, dim, rng, first_sample,
                                                  std::forward<OnStep>(on_step));
}

/// How sample_labeled samples and guides.
struct LabeledSampling {
  SamplerKind kind = SamplerKind::ancestral;
  double eta = 0.0;               ///< DDIM's eta
  double guidance = 0.0;          ///< classifier-free guidance weight w (0: the conditional model)
  double classifier_scale = 0.0;  ///< classifier guidance scale s (with a classifier)
  Index chunk = 256;              ///< samples per sampler call (bounds memory)
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

/// Draws one sample per entry of `labels` (kNoLabel for none) from a conditional model, `chunk`
/// samples per sampler call: with a `classifier` (non-null), ClassifierGuidance at
/// classifier_scale; else with guidance != 0, ClassifierFreeGuidance at weight w; else WithLabels.
/// Row i is global sample i of `rng` as in sample(), so the rows do not depend on the chunk size.
/// on_step(first, progress) follows every step of the chunk whose first row is `first`.
///
///   const Batch<float> x = ddpm::sample_labeled({.kind = SamplerKind::ddim, .guidance = 2.0},
///                                               diffusion, unet, no_classifier, labels, dim, rng);
template <class Real, class M, class C, class OnStep = NoProgress>
Batch<Real> sample_labeled(const LabeledSampling& options, const GaussianDiffusion<Real>& diffusion,
                           M& model, C* classifier, std::span<const int> labels, Index dim,
                           const CounterRng& rng, OnStep&& on_step = {}) {
  const auto n = static_cast<Index>(labels.size());
  detail::require(n >= 1, "labels.size()", n, "a number of samples >= 1");
  detail::require(options.chunk >= 1, "chunk", options.chunk, "a number of samples >= 1");
  Batch<Real> samples(n, dim);
  for (Index first = 0; first < n; first += options.chunk) {
    const Index count = std::min(options.chunk, n - first);
    const std::span<const int> chunk_labels =
        labels.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(count));
    const auto run = [&](auto& denoiser) {
      samples.middleRows(first, count) =
          sample(options.kind, diffusion, options.eta, denoiser, count, dim, rng,
                 static_cast<std::uint32_t>(first),
                 [&](const SamplerProgress<Real>& p) { on_step(first, p); });
    };
    if (classifier != nullptr) {
      ClassifierGuidance<Real, M, C> denoiser(model, *classifier, chunk_labels,
                                              options.classifier_scale);
      run(denoiser);
    } else if (options.guidance != 0.0) {
      ClassifierFreeGuidance<Real, M> denoiser(model, chunk_labels, options.guidance);
      run(denoiser);
    } else {
      WithLabels<Real, M> denoiser(model, chunk_labels);
      run(denoiser);
    }
  }
  return samples;
}

}  // namespace ddpm
